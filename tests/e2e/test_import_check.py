"""Deploy imports each job's module in the environment that job runs in: a dependency present
only where the manifest was made (here: dockyard's own environment, which has python-dotenv)
fails the deploy instead of the job's first run. Real CLI, real server, real uv environments.
"""

import sys
from pathlib import Path

import pytest

from tests.conftest import WORKSPACES, Cli, copy_workspace

pytestmark = pytest.mark.slow

# the manifest is made in an environment with extras, as on the laptop of the issue
LOCAL = ("--python", sys.executable)
EXTRA_WARNING = "`dlt[workspace]` (asked for in group `main`): dlt 1.31.0 has no extra `workspace`"


def job_envs(cli: Cli) -> dict[str, int]:
    """The CLI's cached job environments (those with EnvBuilder's ready marker) and when each
    was made (a rebuild writes a new pyvenv.cfg)."""
    envs = cli.cache_home / "dockyard" / "envs"
    return {
        p.parent.name: (p.parent / "pyvenv.cfg").stat().st_mtime_ns
        for p in envs.glob("*/.dockyard-ready")
    }


def test_missing_dependency_refuses_deploy_until_declared(cli: Cli, tmp_path: Path) -> None:
    ws = copy_workspace(WORKSPACES / "undeclared", tmp_path / "undeclared")

    # a dry run checks too, and creates nothing
    dry = cli.run("deploy", "--dry-run", *LOCAL, cwd=ws, check=False)
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "module `dotenv` is missing for job `summarize`" in dry.stderr
    assert cli.json("info")["deployment_version"] is None  # (the workspace was created first)
    assert cli.json("deployment", "list") == []

    # emergencies: the check is skipped, and the output says so
    skipped = cli.run("deploy", "--skip-import-check", *LOCAL, cwd=ws)
    assert "warning: import check skipped (--skip-import-check)" in skipped.stderr
    before = cli.json("info")["deployment_version"]
    assert len(before) == 40

    # a change to the code: refused, with the module, the job, the distribution and the groups
    (ws / "ledger" / "ingest.py").write_text(
        (ws / "ledger" / "ingest.py").read_text() + "\n# changed\n"
    )
    refused = cli.run("deploy", *LOCAL, cwd=ws, check=False)
    assert refused.returncode == 1
    errors = [ln for ln in refused.stderr.splitlines() if ln.startswith("error: ")]
    assert errors[0] == (
        "error: module `dotenv` is missing for job `summarize` (imported by `ledger.summary`"
        " at ledger/envfile.py:5): add `python-dotenv` to `[project.dependencies]` or to the"
        " group `reports` that job `summarize` requires, or make job `summarize` require the"
        ' group `settings` that declares it (`require={"dependency_groups": ["settings"]}`)'
    )
    assert "nothing was pushed" in errors[-1] and "--skip-import-check" in errors[-1]
    assert len(errors) == 2  # ingest and show_settings import where they run
    assert f"warning: {EXTRA_WARNING}" in refused.stderr
    # nothing reached the server
    assert cli.json("info")["deployment_version"] == before
    assert len(cli.json("deployment", "list")) == 1

    # declared in the group the job requires: deploy passes and the job runs
    pyproject = ws / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'reports = ["pyyaml"]', 'reports = ["pyyaml", "python-dotenv"]'
        )
    )
    deployed = cli.run("deploy", *LOCAL, cwd=ws)
    assert "error:" not in deployed.stderr
    assert f"warning: {EXTRA_WARNING}" in deployed.stderr
    assert cli.json("info")["deployment_version"] != before
    run = cli.run("launch", "summarize", "-f", timeout=600)
    assert "summary: ROWS: '3'" in run.stdout, run.stdout
    assert cli.json("job-run", "summarize", "info")["status"] == "completed"

    # the next deploy reuses the cached environments: none is built again, none added
    built = job_envs(cli)
    (ws / "ledger" / "summary.py").write_text(
        (ws / "ledger" / "summary.py").read_text() + "\n# changed again\n"
    )
    again = cli.run("deploy", *LOCAL, cwd=ws)
    assert "building environment" not in again.stderr
    assert job_envs(cli) == built
    results = cli.cache_home / "dockyard" / "importcheck"
    assert len(list(results.glob("*.json"))) >= 3  # one remembered pass per environment
