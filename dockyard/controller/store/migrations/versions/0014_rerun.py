"""Re-runs and cause/effect links: `run.rerun_of` (the run a re-run runs again) and indexes
on it and on `cause_run_id`, so a run's page finds its follow-ups and re-runs by index

Revision ID: 0014
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rerun_of", sa.String(length=36), nullable=True))
        batch_op.create_index("ix_run_cause_run_id", ["cause_run_id"], unique=False)
        batch_op.create_index("ix_run_rerun_of", ["rerun_of"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_rerun_of")
        batch_op.drop_index("ix_run_cause_run_id")
        batch_op.drop_column("rerun_of")
