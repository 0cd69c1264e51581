"""dicom receiver: routes (calling AE title -> project and dataset) and receptions (associations)

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

import sanctum.db.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dicom_routes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=100), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("set_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_dicom_routes_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["set_by_id"], ["users.id"], name=op.f("fk_dicom_routes_set_by_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_routes")),
        sa.UniqueConstraint("ae_title", name=op.f("uq_dicom_routes_ae_title")),
    )
    with op.batch_alter_table("dicom_routes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dicom_routes_project_id"), ["project_id"], unique=False)

    op.create_table(
        "dicom_receptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("ingest_id", sa.Integer(), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("listener", sa.String(length=300), nullable=False),
        sa.Column("peer", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.Column("ended_at", sanctum.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ingest_id"],
            ["ingest_sessions.id"],
            name=op.f("fk_dicom_receptions_ingest_id_ingest_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_dicom_receptions_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_receptions")),
    )
    with op.batch_alter_table("dicom_receptions", schema=None) as batch_op:
        batch_op.create_index("ix_dicom_receptions_listener_state", ["listener", "state"], unique=False)
        batch_op.create_index(batch_op.f("ix_dicom_receptions_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dicom_receptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dicom_receptions_project_id"))
        batch_op.drop_index("ix_dicom_receptions_listener_state")
    op.drop_table("dicom_receptions")
    with op.batch_alter_table("dicom_routes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dicom_routes_project_id"))
    op.drop_table("dicom_routes")
