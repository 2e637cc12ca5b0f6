"""A workspace whose manifest imports fine where it was made but one job's module does not
import in the environment that job runs in: `ledger.summary` imports `dotenv` (the
distribution `python-dotenv`, declared only in the group `settings`) and its job requires
the group `reports`."""

from ledger.ingest import ingest
from ledger.settings_job import show_settings
from ledger.summary import summarize

__all__ = ["ingest", "show_settings", "summarize"]
