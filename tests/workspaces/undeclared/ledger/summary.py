import yaml
from dlt.hub import run

from ledger import envfile


@run.job(require={"dependency_groups": ["reports"]})
def summarize():
    totals = envfile.parse("ROWS=3\nTABLES=1")
    print(f"summary: {yaml.safe_dump(totals, sort_keys=True).strip()}")
