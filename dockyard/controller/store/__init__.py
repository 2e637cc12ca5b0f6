"""Relational state (SQLAlchemy 2 + Alembic): workspaces, tokens, jobs, runs, beacon payloads."""
