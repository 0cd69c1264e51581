"""quarantine review: an owner's masks and decision per quarantined ingest source

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

import sanctum.db.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantine_reviews",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("masks", sa.JSON(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("stored_path", sa.String(length=1024), nullable=True),
        sa.Column("updated_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.Column("decided_at", sanctum.db.types.UTCDateTime(), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["ingest_sources.id"],
            name=op.f("fk_quarantine_reviews_source_id_ingest_sources"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["users.id"],
            name=op.f("fk_quarantine_reviews_decided_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("source_id", name=op.f("pk_quarantine_reviews")),
    )


def downgrade() -> None:
    op.drop_table("quarantine_reviews")
