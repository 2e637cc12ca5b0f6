"""Alembic environment: runs against the engine dockyard hands over (no alembic.ini)."""

from alembic import context

from dockyard.controller.store.models import Base

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
    )
    context.run_migrations()
