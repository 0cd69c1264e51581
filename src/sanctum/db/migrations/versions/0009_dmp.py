"""dmp: the versions of each project's data management plan

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

import sanctum.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dmp_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("standard", sa.String(length=8), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("confirm_shred", sa.Boolean(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_by_email", sa.String(length=254), nullable=False),
        sa.Column("created_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_dmp_versions_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_dmp_versions_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dmp_versions")),
        sa.UniqueConstraint("project_id", "number", name="uq_dmp_versions_project_number"),
    )
    with op.batch_alter_table("dmp_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dmp_versions_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dmp_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dmp_versions_project_id"))
    op.drop_table("dmp_versions")
