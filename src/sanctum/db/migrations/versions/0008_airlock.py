"""airlock: export requests with their files and reviews, import requests, projects.export_approvals

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

import sanctum.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("required_approvals", sa.Integer(), nullable=False),
        sa.Column("dmp_version", sa.Integer(), nullable=True),
        sa.Column("created_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.Column("submitted_at", sanctum.db.types.UTCDateTime(), nullable=True),
        sa.Column("decided_at", sanctum.db.types.UTCDateTime(), nullable=True),
        sa.Column("released_at", sanctum.db.types.UTCDateTime(), nullable=True),
        sa.Column("released_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_export_requests_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["released_by_id"],
            ["users.id"],
            name=op.f("fk_export_requests_released_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["users.id"],
            name=op.f("fk_export_requests_requested_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_requests")),
        sa.UniqueConstraint("project_id", "number", name="uq_export_requests_project_number"),
    )
    with op.batch_alter_table("export_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_export_requests_project_id"), ["project_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_export_requests_requested_by_id"), ["requested_by_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_export_requests_state"), ["state"], unique=False)

    op.create_table(
        "import_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("dataset_name", sa.String(length=100), nullable=False),
        sa.Column("original_name", sa.String(length=255), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("blob_id", sa.String(length=32), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.Column("uploaded_at", sanctum.db.types.UTCDateTime(), nullable=True),
        sa.Column("decided_at", sanctum.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_import_requests_dataset_id_datasets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["users.id"],
            name=op.f("fk_import_requests_decided_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_import_requests_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["users.id"],
            name=op.f("fk_import_requests_requested_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_import_requests_version_id_dataset_versions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_requests")),
        sa.UniqueConstraint("project_id", "number", name="uq_import_requests_project_number"),
    )
    with op.batch_alter_table("import_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_import_requests_project_id"), ["project_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_import_requests_requested_by_id"), ["requested_by_id"], unique=False
        )

    op.create_table(
        "export_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("dataset_name", sa.String(length=100), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("job_number", sa.Integer(), nullable=False),
        sa.Column("job_manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("check_verdict", sa.String(length=8), nullable=False),
        sa.Column("check_reasons", sa.JSON(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=True),
        sa.Column("row_count", sa.BigInteger(), nullable=True),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.Column("override_by_id", sa.Integer(), nullable=True),
        sa.Column("override_at", sanctum.db.types.UTCDateTime(), nullable=True),
        sa.Column("added_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_export_files_dataset_id_datasets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_export_files_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["override_by_id"],
            ["users.id"],
            name=op.f("fk_export_files_override_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["export_requests.id"],
            name=op.f("fk_export_files_request_id_export_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_export_files_version_id_dataset_versions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_files")),
        sa.UniqueConstraint("request_id", "name", name="uq_export_files_request_name"),
    )
    with op.batch_alter_table("export_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_export_files_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_export_files_version_id"), ["version_id"], unique=False)

    op.create_table(
        "export_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column("verdict", sa.String(length=8), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sanctum.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["export_files.id"],
            name=op.f("fk_export_reviews_file_id_export_files"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["export_requests.id"],
            name=op.f("fk_export_reviews_request_id_export_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"],
            ["users.id"],
            name=op.f("fk_export_reviews_reviewer_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_reviews")),
        sa.UniqueConstraint("file_id", "reviewer_id", name="uq_export_reviews_file_reviewer"),
    )
    with op.batch_alter_table("export_reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_export_reviews_request_id"), ["request_id"], unique=False)

    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("export_approvals", sa.Integer(), server_default="2", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("export_approvals")

    with op.batch_alter_table("export_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_reviews_request_id"))

    op.drop_table("export_reviews")
    with op.batch_alter_table("export_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_files_version_id"))
        batch_op.drop_index(batch_op.f("ix_export_files_request_id"))

    op.drop_table("export_files")
    with op.batch_alter_table("import_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_import_requests_requested_by_id"))
        batch_op.drop_index(batch_op.f("ix_import_requests_project_id"))

    op.drop_table("import_requests")
    with op.batch_alter_table("export_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_requests_state"))
        batch_op.drop_index(batch_op.f("ix_export_requests_requested_by_id"))
        batch_op.drop_index(batch_op.f("ix_export_requests_project_id"))

    op.drop_table("export_requests")
