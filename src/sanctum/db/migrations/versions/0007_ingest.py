"""ingest: sessions, source files, dataset table policies, per-project secrets

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

import sanctum.db.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_project_secrets_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_secrets")),
        sa.UniqueConstraint("project_id", "purpose", name="uq_project_secrets_project_purpose"),
    )
    op.create_table(
        "dataset_policies",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("updated_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_policies_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"], ["users.id"], name=op.f("fk_dataset_policies_updated_by_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_dataset_policies")),
    )
    op.create_table(
        "ingest_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("use_dask", sa.Boolean(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", sanctum.db.types.UTCDateTime(), nullable=True),
        sa.Column("metadata_dataset_id", sa.Integer(), nullable=True),
        sa.Column("metadata_version", sa.Integer(), nullable=True),
        sa.Column("metadata_rows", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_ingest_sessions_created_by_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_ingest_sessions_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["metadata_dataset_id"],
            ["datasets.id"],
            name=op.f("fk_ingest_sessions_metadata_dataset_id_datasets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_ingest_sessions_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_ingest_sessions_version_id_dataset_versions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_sessions")),
        sa.UniqueConstraint("project_id", "number", name="uq_ingest_sessions_project_number"),
    )
    with op.batch_alter_table("ingest_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ingest_sessions_dataset_id"), ["dataset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ingest_sessions_project_id"), ["project_id"], unique=False)

    op.create_table(
        "ingest_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("path_hmac", sa.String(length=64), nullable=False),
        sa.Column("path_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("content_hmac", sa.String(length=64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("stored_path", sa.String(length=1024), nullable=True),
        sa.Column("blob_id", sa.String(length=32), nullable=True),
        sa.Column("meta_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["ingest_sessions.id"],
            name=op.f("fk_ingest_sources_session_id_ingest_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_sources")),
        sa.UniqueConstraint("session_id", "path_hmac", name="uq_ingest_sources_session_path"),
    )
    with op.batch_alter_table("ingest_sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ingest_sources_blob_id"), ["blob_id"], unique=False)
        batch_op.create_index("ix_ingest_sources_session_content", ["session_id", "content_hmac"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ingest_sources", schema=None) as batch_op:
        batch_op.drop_index("ix_ingest_sources_session_content")
        batch_op.drop_index(batch_op.f("ix_ingest_sources_blob_id"))
    op.drop_table("ingest_sources")
    with op.batch_alter_table("ingest_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_sessions_project_id"))
        batch_op.drop_index(batch_op.f("ix_ingest_sessions_dataset_id"))
    op.drop_table("ingest_sessions")
    op.drop_table("dataset_policies")
    op.drop_table("project_secrets")
