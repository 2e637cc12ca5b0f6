"""who and why: runs record who triggered them (and whether by hand) and who cancelled them;
the append-only audit log (`audit_event`)

Revision ID: 0013
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from dockyard.controller.store.models import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("triggered_by", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("manual", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("cancelled_by", sa.String(length=255), nullable=True))
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(length=128), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=True),
        sa.Column("workspace", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_event_ws_id", "audit_event", ["workspace_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_event_ws_id", table_name="audit_event")
    op.drop_table("audit_event")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("cancelled_by")
        batch_op.drop_column("manual")
        batch_op.drop_column("triggered_by")
