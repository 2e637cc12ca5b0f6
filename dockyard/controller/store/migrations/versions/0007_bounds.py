"""beacon payload sizes (per-run caps) and tokens that came from DOCKYARD_ADMIN_TOKEN

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ENV_TOKEN_NAME = "admin (DOCKYARD_ADMIN_TOKEN)"  # noqa: S105 (a name, not a secret)


def upgrade() -> None:
    with op.batch_alter_table("beacon_payload", schema=None) as batch_op:
        batch_op.add_column(sa.Column("size", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=16), nullable=True))
    # the only admin tokens made from the environment before this column were named so
    token = sa.table("token", sa.column("name", sa.String), sa.column("source", sa.String))
    op.execute(token.update().where(token.c.name == ENV_TOKEN_NAME).values(source="env"))


def downgrade() -> None:
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.drop_column("source")
    with op.batch_alter_table("beacon_payload", schema=None) as batch_op:
        batch_op.drop_column("size")
