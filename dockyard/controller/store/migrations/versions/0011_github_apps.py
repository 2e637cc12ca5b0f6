"""GitHub Apps: one row per App (sealed private key, webhook secret, its webhook URL's id);
App links name their App and installation and have no stored token

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from dockyard.controller.store.models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "github_app",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.BigInteger(), nullable=False),
        sa.Column("api_url", sa.String(length=255), nullable=False),
        sa.Column("hook_id", sa.String(length=64), nullable=False),
        sa.Column("sealed_private_key", sa.Text(), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "api_url"),
        sa.UniqueConstraint("hook_id"),
    )
    with op.batch_alter_table("github_link", schema=None) as batch_op:
        batch_op.alter_column("sealed_credential", existing_type=sa.Text(), nullable=True)
        batch_op.add_column(sa.Column("app_ref", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("installation_id", sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f("ix_github_link_app_ref"), ["app_ref"], unique=False)
        batch_op.create_foreign_key(
            "fk_github_link_app_ref_github_app", "github_app", ["app_ref"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("github_link", schema=None) as batch_op:
        batch_op.drop_constraint("fk_github_link_app_ref_github_app", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_github_link_app_ref"))
        batch_op.drop_column("installation_id")
        batch_op.drop_column("app_ref")
        batch_op.alter_column("sealed_credential", existing_type=sa.Text(), nullable=False)
    op.drop_table("github_app")
