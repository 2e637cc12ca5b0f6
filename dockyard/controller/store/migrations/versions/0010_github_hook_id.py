"""GitHub links: the id GitHub gave the webhook dockyard created (None: made by hand)

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("github_link", schema=None) as batch_op:
        batch_op.add_column(sa.Column("github_hook_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("github_link", schema=None) as batch_op:
        batch_op.drop_column("github_hook_id")
