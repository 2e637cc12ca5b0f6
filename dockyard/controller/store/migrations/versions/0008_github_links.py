"""GitHub links (sealed credential and webhook secret) and webhook deliveries

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from dockyard.controller.store.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "github_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("hook_id", sa.String(length=64), nullable=False),
        sa.Column("repo", sa.String(length=140), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("api_url", sa.String(length=255), nullable=False),
        sa.Column("credential_kind", sa.String(length=16), nullable=False),
        sa.Column("sealed_credential", sa.Text(), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_processed_head", sa.String(length=40), nullable=True),
        sa.Column("last_processed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id"),
        sa.UniqueConstraint("hook_id"),
    )
    op.create_table(
        "github_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("repo", sa.String(length=140), nullable=True),
        sa.Column("ref", sa.String(length=255), nullable=True),
        sa.Column("head_sha", sa.String(length=40), nullable=True),
        sa.Column("before_sha", sa.String(length=40), nullable=True),
        sa.Column("after_sha", sa.String(length=40), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "delivery_id"),
    )
    with op.batch_alter_table("github_delivery", schema=None) as batch_op:
        batch_op.create_index("ix_github_delivery_status", ["status", "link_id"], unique=False)
        batch_op.create_index(
            "ix_github_delivery_ws_received", ["workspace_id", "received_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("github_delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_github_delivery_ws_received")
        batch_op.drop_index("ix_github_delivery_status")
    op.drop_table("github_delivery")
    op.drop_table("github_link")
