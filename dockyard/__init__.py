"""dockyard: a self-hosted, git-driven runtime for dlt workspaces.

Importing this package is cheap on purpose: the CLI, the server and the per-run supervisor all
start from here, and nothing heavy (dlt, SQLAlchemy, FastAPI) is imported until it is used.
"""

__version__ = "0.1.0"
