from dlt.hub import run

from ledger import envfile


@run.job(require={"dependency_groups": ["settings"]})
def show_settings():
    print(f"settings: {envfile.parse('REGION=eu')}")
