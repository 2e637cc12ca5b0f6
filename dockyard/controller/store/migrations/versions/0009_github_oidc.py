"""GitHub Actions OIDC: the repositories and refs allowed per workspace, token expiry

Revision ID: 0009
Revises: 0008 (chained to 0007 on this branch until 0008, the webhook tables, lands)
"""

import sqlalchemy as sa
from alembic import op

from dockyard.controller.store.models import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
    op.create_table(
        "github_oidc_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("repository", sa.String(length=140), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "repository", "ref"),
    )
    with op.batch_alter_table("github_oidc_rule", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_github_oidc_rule_workspace_id"), ["workspace_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("github_oidc_rule")
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
