"""The shipped examples deploy and run with plain open-source dlt."""

from pathlib import Path

from tests.conftest import EXAMPLES, Cli, copy_workspace, wait_run


def test_weather_workspace_deploys_and_runs(cli: Cli, tmp_path: Path) -> None:
    ws = copy_workspace(EXAMPLES / "weather_workspace", tmp_path / "weather")
    # the example records workspace `demo` (what `make demo` deploys it as): -w deploys it here
    result = cli.json("deploy", "-w", cli.workspace, cwd=ws)
    assert set(result["added"]) == {
        "jobs.weather.ingest_weather",
        "jobs.weather.weather_report",
        "jobs.weather.heartbeat",
        "jobs.weather.show_config",
        "jobs.workspace.dashboard",
    }
    ingest = cli.run("launch", "ingest_weather", "-f").stdout
    assert "loaded 21 rows for 3 cities x 7 days" in ingest
    # the follow-up (job.success of the ingest) was created when the ingest completed
    report_run = wait_run(cli, "weather_report", 1)
    assert report_run["status"] == "completed"
    assert report_run["trigger"] == "job.success:jobs.weather.ingest_weather"
    report = cli.run("logs", "weather_report", "1").stdout  # it needed the `reports` group
    assert "warmest" in report and "Lisbon" in report
    config = cli.run("launch", "show_config", "-f").stdout
    assert "profile: prod" in config and "overridden by prod.config.toml" in config
    run = cli.json("job-run", "ingest_weather", "info")
    assert run["result"]["type"] == "job.weather_ingest_summary"
    assert run["pipelines"][0]["tables"]["observations"] == 21


def test_adhoc_script_example_launches(cli: Cli, tmp_path: Path) -> None:
    ws = copy_workspace(EXAMPLES / "adhoc_script", tmp_path / "adhoc")
    out = cli.run("launch", "fruit_loader.py", "-f", cwd=ws).stdout
    assert "profile: prod" in out and "5 fruits" in out
    assert [j["job_ref"] for j in cli.json("job", "list")] == ["jobs.fruit_loader"]
