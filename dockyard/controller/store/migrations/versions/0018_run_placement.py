"""Where a run may go: `run.pool` and `run.labels` (controller/placement.py)

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pool", sa.String(length=64), server_default="default", nullable=False)
        )
        batch_op.add_column(sa.Column("labels", sa.JSON(), nullable=True))
        batch_op.create_index("ix_run_status_pool", ["status", "pool"], unique=False)
    op.execute("UPDATE run SET labels = '{}'")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.alter_column("labels", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_status_pool")
        batch_op.drop_column("labels")
        batch_op.drop_column("pool")
