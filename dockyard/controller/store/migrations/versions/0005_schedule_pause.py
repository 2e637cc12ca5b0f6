"""schedule pause (job.paused_at/paused_by) and the dashboard's run-list indexes

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from dockyard.controller.store.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("paused_by", sa.String(length=128), nullable=True))
    # plain CREATE INDEX (no batch table copy): the run table can be large
    op.create_index("ix_run_ws_created", "run", ["workspace_id", "created_at", "id"])
    op.create_index(
        "ix_run_ws_status_created", "run", ["workspace_id", "status", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_run_ws_status_created", table_name="run")
    op.drop_index("ix_run_ws_created", table_name="run")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("paused_by")
        batch_op.drop_column("paused_at")
