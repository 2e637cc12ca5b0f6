from dlt.hub import run


@run.job
def ingest():
    """Needs nothing beyond the main dependencies."""
    print("ingested 3 rows")
