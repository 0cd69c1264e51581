"""datasets, versions, files, shares, project keys

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import sanctum.db.types

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sanctum.db.types.UTCDateTime(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('shredded_at', sanctum.db.types.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_datasets_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_datasets_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('project_id', 'name', name='uq_datasets_project_name')
    )
    op.create_table('dataset_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sanctum.db.types.UTCDateTime(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('committed_at', sanctum.db.types.UTCDateTime(), nullable=True),
    sa.Column('file_count', sa.Integer(), nullable=False),
    sa.Column('total_size', sa.BigInteger(), nullable=False),
    sa.Column('manifest_sha256', sa.String(length=64), nullable=True),
    sa.Column('table_schema', sa.JSON(), nullable=True),
    sa.Column('row_count', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_dataset_versions_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_versions_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_versions')),
    sa.UniqueConstraint('dataset_id', 'number', name='uq_dataset_versions_dataset_number')
    )
    op.create_table('shares',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('source_project_id', sa.Integer(), nullable=False),
    sa.Column('target_project_id', sa.Integer(), nullable=False),
    sa.Column('access', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sanctum.db.types.UTCDateTime(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sanctum.db.types.UTCDateTime(), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('revoked_at', sanctum.db.types.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_shares_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_shares_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_shares_decided_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['source_project_id'], ['projects.id'], name=op.f('fk_shares_source_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['target_project_id'], ['projects.id'], name=op.f('fk_shares_target_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shares'))
    )
    with op.batch_alter_table('shares', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shares_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_shares_target_project_id'), ['target_project_id'], unique=False)

    op.create_table('version_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('blob_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sanctum.db.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['dataset_versions.id'], name=op.f('fk_version_files_version_id_dataset_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_version_files')),
    sa.UniqueConstraint('version_id', 'path', name='uq_version_files_version_path')
    )
    with op.batch_alter_table('version_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_version_files_blob_id'), ['blob_id'], unique=False)

    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wrapped_key', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('query_row_limit', sa.Integer(), server_default='1000', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('query_row_limit')
        batch_op.drop_column('wrapped_key')

    with op.batch_alter_table('version_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_version_files_blob_id'))

    op.drop_table('version_files')
    with op.batch_alter_table('shares', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shares_target_project_id'))
        batch_op.drop_index(batch_op.f('ix_shares_dataset_id'))

    op.drop_table('shares')
    op.drop_table('dataset_versions')
    op.drop_table('datasets')
