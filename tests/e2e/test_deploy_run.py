"""The spine end to end: deploy → git commit → reconcile → run → logs, with real processes."""

import json
import subprocess
from pathlib import Path

from tests.conftest import Cli, wait_run

JOBS = {
    "jobs.__deployment__.hello",
    "jobs.__deployment__.after_hello",
    "jobs.__deployment__.fails",
    "jobs.__deployment__.sleeper",
    "jobs.__deployment__.napper",
    "jobs.__deployment__.load_numbers",
    "jobs.__deployment__.tiny_api",
    "jobs.workspace.dashboard",
}


def test_deploy_creates_commit_and_jobs(cli: Cli, basic_ws: Path) -> None:
    dry = cli.json("deploy", "--dry-run", cwd=basic_ws)
    assert set(dry["added"]) == JOBS
    assert dry["deployment_version"] is None and dry["configuration_version"] is None
    # a dry run commits nothing and records nothing (the helper created the empty workspace)
    assert cli.json("info")["deployment_version"] is None
    assert "[dockyard]" not in (basic_ws / ".dlt" / "config.toml").read_text()

    first = cli.json("deploy", cwd=basic_ws)
    assert set(first["added"]) == JOBS and first["archived"] == []
    assert len(first["deployment_version"]) == 40
    assert first["configuration_version"] == first["deployment_version"]
    # the directory now records its workspace; committed, so the next deploy changes nothing
    assert first["recorded_workspace"] == cli.workspace
    assert f'workspace = "{cli.workspace}"' in (basic_ws / ".dlt" / "config.toml").read_text()

    jobs = {j["job_ref"]: j for j in cli.json("job", "list")}
    assert set(jobs) == JOBS
    hello = jobs["jobs.__deployment__.hello"]
    assert hello["status"] == "active" and hello["tags"] == ["quick"]
    assert hello["job_type"] == "batch" and hello["last_run"] is None
    assert jobs["jobs.__deployment__.after_hello"]["triggers"] == [
        "job.success:jobs.__deployment__.hello"
    ]

    # the same workspace again: no commit, no new version
    again = cli.json("deploy", cwd=basic_ws)
    assert again["added"] == [] and set(again["unchanged"]) == JOBS
    assert again["deployment_version"] == first["deployment_version"]
    assert again["commit"] is None
    assert len(cli.json("deployment", "list")) == 1


def test_launch_follow_runs_the_job_with_prod_profile(cli: Cli, basic_ws: Path) -> None:
    cli.run("deploy", cwd=basic_ws)
    proc = cli.run("launch", "hello", "-f")
    assert "greeting: hello from prod.config.toml" in proc.stdout
    assert "profile: prod" in proc.stdout
    run = cli.json("job-run", "hello", "info")
    assert run["status"] == "completed" and run["exit_code"] == 0
    assert run["number"] == 1 and run["profile"] == "prod"
    assert run["trigger"] == "manual:jobs.__deployment__.hello"
    assert run["result"]["result"] == {"greeting": "hello from prod.config.toml"}
    assert run["deployment_version"] == cli.json("info")["deployment_version"]
    for key in ("created_at", "started_at", "finished_at"):
        assert run[key].endswith("+00:00")
    logs = cli.run("logs", "hello").stdout
    assert "greeting: hello from prod.config.toml" in logs
    # the dev profile's file is never shipped
    info = cli.json("configuration", "info")
    assert {f["name"] for f in info["files"]} == {"config.toml", "prod.config.toml"}


def test_failed_job_reports_the_exception_it_raised(cli: Cli, basic_ws: Path) -> None:
    cli.run("deploy", cwd=basic_ws)
    proc = cli.run("launch", "fails", "-f", check=False)
    assert proc.returncode == 1
    assert "RuntimeError: boom on purpose" in proc.stdout
    run = cli.json("job-run", "fails", "info")
    assert run["status"] == "failed" and run["exit_code"] == 1
    assert run["reason"] == "RuntimeError: boom on purpose (__deployment__.py:26)"


def test_timeout_kills_the_process_group(cli: Cli, basic_ws: Path) -> None:
    cli.run("deploy", cwd=basic_ws)
    cli.run("launch", "sleeper")
    run = wait_run(cli, "sleeper", timeout=120)
    assert run["status"] == "failed" and run["reason"] == "timeout"
    logs = cli.run("logs", "sleeper").stdout
    assert "SIGTERM" in logs and "SIGKILL" in logs


def test_cancel_stops_a_running_job(cli: Cli, basic_ws: Path) -> None:
    cli.run("deploy", cwd=basic_ws)
    cli.run("launch", "napper")
    wait_run(cli, "napper", statuses=("running",))
    result = cli.json("cancel", "napper")
    assert result["cancelled"][0]["job_ref"] == "jobs.__deployment__.napper"
    run = wait_run(cli, "napper", timeout=60)
    assert run["status"] == "cancelled"
    assert cli.json("cancel", "napper")["not_running"] == ["jobs.__deployment__.napper"]


def test_trigger_selectors_and_pipeline_summary(cli: Cli, basic_ws: Path) -> None:
    cli.run("deploy", cwd=basic_ws)
    dry = cli.json("trigger", "tag:quick", "--dry-run")
    assert {t["job_ref"] for t in dry["triggered"]} == {
        "jobs.__deployment__.hello",
        "jobs.__deployment__.after_hello",
    }
    assert all(t["run_id"] is None for t in dry["triggered"])
    result = cli.json("run-pipeline", "numbers_pipeline")
    assert result["triggered"][0]["job_ref"] == "jobs.__deployment__.load_numbers"
    run = wait_run(cli, "load_numbers")
    assert run["status"] == "completed", cli.run("logs", "load_numbers").stdout
    assert run["trigger"] == "pipeline_name:numbers_pipeline"
    # dlt's telemetry finds its anonymous id in the run's read-only settings folder: no
    # "Read-only file system" traceback at each pipeline step above the job's own output
    logged = cli.run("logs", "load_numbers", "--all").stdout
    assert "numbers_pipeline" in logged and ".anonymous_id" not in logged
    (summary,) = run["pipelines"]
    assert summary["pipeline"] == "numbers_pipeline" and summary["tables"]["numbers"] == 5
    listed = cli.json("job-run", "list", "tag:load")
    assert [r["run_id"] for r in listed] == [run["run_id"]]


def test_git_clone_shows_what_is_deployed(cli: Cli, basic_ws: Path, tmp_path: Path) -> None:
    cli.run("deploy", cwd=basic_ws)
    target = tmp_path / "clone"
    subprocess.run(
        [
            "git",
            "-c",
            f"http.extraHeader=Authorization: Bearer {cli.server.token}",
            "clone",
            f"{cli.server.url}/git/{cli.workspace}.git",
            str(target),
        ],
        check=True,
        capture_output=True,
    )
    assert (target / "code" / "__deployment__.py").read_text() == (
        basic_ws / "__deployment__.py"
    ).read_text()
    assert (target / "config" / "prod.config.toml").exists()
    assert not (target / "config" / "dev.config.toml").exists()
    assert "jobs.__deployment__.hello" in (target / "manifest.yaml").read_text()
    requirements = json.loads((target / "requirements.json").read_text())
    assert requirements["dlt_version"]["version"] == "1.31.0"
    log = subprocess.run(
        ["git", "-C", str(target), "log", "--format=%s"], check=True, capture_output=True, text=True
    ).stdout
    assert log.strip() == "deploy: 8 added"
