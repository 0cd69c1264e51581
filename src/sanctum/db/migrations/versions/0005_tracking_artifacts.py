"""artifacts, logged models, run inputs/outputs, model registry, project artifact_download

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import sanctum.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    name = f"fk_{table}_{column}_{target.split('.')[0]}"
    return sa.ForeignKeyConstraint([column], [target], name=name, ondelete=ondelete)


def _key_values(table: str, owner: str, owner_type: sa.types.TypeEngine, target: str) -> None:
    op.create_table(
        table,
        sa.Column(owner, owner_type, nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        _fk(table, owner, target, "CASCADE"),
        sa.PrimaryKeyConstraint(owner, "key", name=f"pk_{table}"),
    )


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("artifact_download", sa.String(length=16), server_default="allowed", nullable=False)
        )

    op.create_table(
        "experiment_keys",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        _fk("experiment_keys", "experiment_id", "experiments.id", "CASCADE"),
        sa.PrimaryKeyConstraint("experiment_id", name="pk_experiment_keys"),
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("blob_id", sa.String(length=32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sanctum.db.types.UTCDateTime(), nullable=False),
        _fk("artifacts", "experiment_id", "experiments.id", "CASCADE"),
        _fk("artifacts", "created_by_id", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
        sa.UniqueConstraint("experiment_id", "path", name="uq_artifacts_experiment_path"),
    )
    op.create_index("ix_artifacts_blob_id", "artifacts", ["blob_id"], unique=False)

    op.create_table(
        "logged_models",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("source_run_id", sa.String(length=32), nullable=True),
        sa.Column("model_type", sa.String(length=250), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_update_time", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        _fk("logged_models", "experiment_id", "experiments.id", "CASCADE"),
        _fk("logged_models", "source_run_id", "runs.id", "SET NULL"),
        _fk("logged_models", "user_id", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_logged_models"),
    )
    op.create_index("ix_logged_models_experiment_name", "logged_models", ["experiment_id", "name"])
    _key_values("logged_model_tags", "model_id", sa.String(length=40), "logged_models.id")
    _key_values("logged_model_params", "model_id", sa.String(length=40), "logged_models.id")
    op.create_table(
        "run_model_links",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.String(length=40), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        _fk("run_model_links", "run_id", "runs.id", "CASCADE"),
        _fk("run_model_links", "model_id", "logged_models.id", "CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "model_id", "direction", name="pk_run_model_links"),
    )

    op.create_table(
        "registered_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_update_time", sa.BigInteger(), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        _fk("registered_models", "project_id", "projects.id", "CASCADE"),
        _fk("registered_models", "user_id", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_registered_models"),
        sa.UniqueConstraint("project_id", "name", name="uq_registered_models_project_name"),
    )
    _key_values("registered_model_tags", "registered_model_id", sa.Integer(), "registered_models.id")
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("registered_model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("model_id", sa.String(length=40), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("current_stage", sa.String(length=20), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_update_time", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        _fk("model_versions", "registered_model_id", "registered_models.id", "CASCADE"),
        _fk("model_versions", "user_id", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("registered_model_id", "version", name="uq_model_versions_model_version"),
    )
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"], unique=False)
    _key_values("model_version_tags", "model_version_id", sa.Integer(), "model_versions.id")
    op.create_table(
        "registered_model_aliases",
        sa.Column("registered_model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(  # the conventional name is longer than PostgreSQL's 63 characters
            ["registered_model_id"],
            ["registered_models.id"],
            name="fk_registered_model_aliases_model",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("registered_model_id", "alias", name="pk_registered_model_aliases"),
    )


def downgrade() -> None:
    for table in (
        "registered_model_aliases",
        "model_version_tags",
        "model_versions",
        "registered_model_tags",
        "registered_models",
        "run_model_links",
        "logged_model_params",
        "logged_model_tags",
        "logged_models",
        "artifacts",
        "experiment_keys",
    ):
        op.drop_table(table)
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("artifact_download")
