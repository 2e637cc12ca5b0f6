"""`launch`, `serve`, `trigger`, `run-pipeline`, `cancel`, `logs`, `job …`, `job-run …`."""

import sys
from pathlib import Path
from typing import Any

import click

from dockyard.cli import commands_apps, output, runlogs
from dockyard.cli.client import Client
from dockyard.cli.commands_workspace import client_for, show_deploy
from dockyard.errors import InvalidInput

SERVE_WAIT_S = 600.0  # the first start of an app may build its environment


def register(cli: click.Group) -> None:
    for command in (launch, serve, trigger, run_pipeline, cancel, logs, job, job_run):
        cli.add_command(command)


def _trigger(
    client: Client, selectors: list[str], refresh: bool = False, dry_run: bool = False
) -> dict[str, Any]:
    body = {"selectors": selectors, "refresh": refresh, "dry_run": dry_run}
    result: dict[str, Any] = client.post(f"{client.ws}/trigger", body)
    return result


def _deploy_script(client: Client, script: str, fmt: str) -> str:
    """Ad-hoc deploy of one file; returns the job ref it became."""
    from dockyard.cli.deploy import DeployOptions, deploy

    result = deploy(client, DeployOptions(Path.cwd().resolve(), script=script))
    if fmt != "json":
        show_deploy(result, client, fmt, False)
    refs = result.plan.refs("added") + result.plan.refs("updated")
    module = Path(script).stem
    own = [
        r
        for r in result.manifest.get("jobs", [])
        if r["entry_point"]["module"].split(".")[-1] == module
    ]
    if own:
        return str(own[0]["job_ref"])
    if refs:
        return refs[0]
    raise InvalidInput(f"{script} did not become a job; is it a dlt script?")


def _start(client: Client, target: str, refresh: bool, fmt: str) -> dict[str, Any]:
    if target.endswith(".py"):
        target = _deploy_script(client, target, fmt)
    result = _trigger(client, [target], refresh)
    return dict(result["triggered"][0])


@click.command()
@click.argument("target")
@click.option("-f", "--follow", "follow_logs", is_flag=True, help="Follow the run's log.")
@click.option("--refresh", is_flag=True, help="Run with refresh (full reload).")
@output.workspace_option
@output.output_option
def launch(
    target: str, follow_logs: bool, refresh: bool, workspace: str | None, output_fmt: str
) -> None:
    """Start a job now (a job name, or a script.py deployed ad hoc first)."""
    client = client_for(workspace)
    started = _start(client, target, refresh, output_fmt)
    if not follow_logs:
        if output_fmt == "json":
            output.emit_json(started)
        else:
            click.echo(
                f"started run #{started['number']} of {started['job_ref']} ({started['run_id']})"
            )
        return
    run = runlogs.follow(client, started["run_id"], sys.stderr if output_fmt == "json" else None)
    if output_fmt == "json":
        output.emit_json(run)
    runlogs.finish(run)


@click.command()
@click.argument("target")
@click.option("-f", "--follow", "follow_logs", is_flag=True, help="Then follow the app's log.")
@output.workspace_option
@output.output_option
def serve(target: str, follow_logs: bool, workspace: str | None, output_fmt: str) -> None:
    """Start an app (an interactive job, or a script.py deployed ad hoc) or find it running;
    return once it answers through the server, and print its URL."""
    client = client_for(workspace)
    if target.endswith(".py"):
        target = _deploy_script(client, target, output_fmt)
    url, run = commands_apps.wait_served(client, target, SERVE_WAIT_S)
    if output_fmt == "json":
        output.emit_json({**run, "url": url})
    else:
        click.echo(f"{run['job_ref']} run #{run['number']} serving at {url}")
    if follow_logs:
        runlogs.finish(runlogs.follow(client, run["run_id"]))


@click.command()
@click.argument("selectors", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Show what would start.")
@click.option("--refresh", is_flag=True)
@output.workspace_option
@output.output_option
def trigger(
    selectors: tuple[str, ...], dry_run: bool, refresh: bool, workspace: str | None, output_fmt: str
) -> None:
    """Start every job matched by the selectors (`tag:x`, `schedule:*`, `batch`, names, globs)."""
    result = _trigger(client_for(workspace), list(selectors), refresh, dry_run)
    if output_fmt == "json":
        output.emit_json(result)
        return
    for entry in result["triggered"]:
        number = f"#{entry['number']}" if entry.get("number") else ""
        click.echo(f"{entry['status']:<14} {entry['job_ref']} {number} ({entry['trigger']})")


@click.command("run-pipeline")
@click.argument("pipeline_name")
@click.option("-f", "--follow", "follow_logs", is_flag=True)
@click.option("--refresh", is_flag=True)
@output.workspace_option
@output.output_option
def run_pipeline(
    pipeline_name: str, follow_logs: bool, refresh: bool, workspace: str | None, output_fmt: str
) -> None:
    """Start the job that delivers PIPELINE_NAME."""
    client = client_for(workspace)
    result = _trigger(client, [f"pipeline_name:{pipeline_name}"], refresh)
    started = result["triggered"][0]
    if not follow_logs:
        if output_fmt == "json":
            output.emit_json(result)
        else:
            click.echo(f"started run #{started['number']} of {started['job_ref']}")
        return
    runlogs.finish(runlogs.follow(client, started["run_id"]))


@click.command()
@click.argument("selectors", nargs=-1, required=True)
@output.workspace_option
@output.output_option
def cancel(selectors: tuple[str, ...], workspace: str | None, output_fmt: str) -> None:
    """Cancel the active runs of the matched jobs."""
    client = client_for(workspace)
    result = client.post(f"{client.ws}/cancel", {"selectors": list(selectors)})
    if output_fmt == "json":
        output.emit_json(result)
        return
    for entry in result["cancelled"]:
        click.echo(f"{entry['status']:<11} {entry['job_ref']} #{entry['number']}")
    for ref in result["not_running"]:
        click.echo(f"not running {ref}")


def _run(client: Client, job_name: str, number: int | None) -> dict[str, Any]:
    run: dict[str, Any] = client.get(f"{client.ws}/jobs/{job_name}/runs/{number or 0}")
    return run


def _logs(
    client: Client,
    job_name: str,
    number: int | None,
    follow_logs: bool,
    fmt: str,
    win: runlogs.Window,
) -> None:
    run = _run(client, job_name, number)
    offset = runlogs.show(client, run["run_id"], win, "text" if follow_logs else fmt)
    if follow_logs:
        runlogs.finish(runlogs.follow(client, run["run_id"], offset=offset))


@click.command()
@click.argument("job_name")
@click.argument("number", type=int, required=False)
@click.option("-f", "--follow", "follow_logs", is_flag=True, help="Then follow the log.")
@runlogs.window_options
@output.workspace_option
@output.output_option
def logs(
    job_name: str,
    number: int | None,
    follow_logs: bool,
    head: int | None,
    tail: int | None,
    everything: bool,
    workspace: str | None,
    output_fmt: str,
) -> None:
    """Logs of a job's latest run (or run NUMBER): the last 200 lines unless told."""
    win = runlogs.window(head, tail, everything, follow_logs)
    _logs(client_for(workspace), job_name, number, follow_logs, output_fmt, win)


def _show_jobs(data: list[dict[str, Any]]) -> None:
    output.table(
        [
            [
                j["name"],
                j["job_type"],
                j["status"],
                ", ".join(j["triggers_humanized"]) or "manual",
                j["tags"],
                (j["last_run"] or {}).get("status"),
                output.when((j["last_run"] or {}).get("created_at")),
            ]
            for j in data
        ],
        ["job", "type", "status", "triggers", "tags", "last run", "at"],
    )


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1, required=True)
@output.workspace_option
@output.output_option
def job(args: tuple[str, ...], workspace: str | None, output_fmt: str) -> None:
    """`job list`, `job NAME info`, or `job NAME pause|resume` (its timed triggers)."""
    client = client_for(workspace)
    if list(args) == ["list"]:
        data = client.get(f"{client.ws}/jobs")
        output.emit_json(data) if output_fmt == "json" else _show_jobs(data)
        return
    if len(args) == 2 and args[1] == "info":
        data = client.get(f"{client.ws}/jobs/{args[0]}")
        if output_fmt == "json":
            output.emit_json(data)
            return
        _show_job(data)
        return
    if len(args) == 2 and args[1] in ("pause", "resume"):
        data = client.post(f"{client.ws}/jobs/{args[0]}/{args[1]}")
        if output_fmt == "json":
            output.emit_json(data)
            return
        state = f"paused since {output.when(data['paused_at'])}" if data["paused_at"] else "active"
        click.echo(f"{data['job_ref']}: timed triggers {state}")
        return
    raise InvalidInput("usage: dockyard job list | dockyard job NAME info|pause|resume")


def _show_job(data: dict[str, Any]) -> None:
    freshness = data["freshness"]
    gate = (
        "no gate"
        if not freshness["constraints"]
        else ("fresh" if freshness["fresh"] else f"not fresh: {freshness['reason']}")
    )
    output.kv(
        [
            ("job", data["job_ref"]),
            ("type", data["job_type"]),
            ("status", data["status"]),
            ("description", data["description"]),
            ("triggers", data["triggers_humanized"] or ["manual only"]),
            ("default trigger", data["default_trigger"]),
            ("tags", data["tags"]),
            ("timezone", data["timezone"]),
            ("concurrency", data["concurrency"] or "unlimited"),
            ("freshness", gate),
            ("refresh pending", data["refresh_pending"]),
            ("runs", data["run_count"]),
            ("last run", _run_line(data["last_run"])),
        ]
    )
    if data["next_runs"]:
        click.echo("next runs (UTC / job's timezone):")
        for utc, local in zip(data["next_runs"], data["next_runs_local"], strict=True):
            click.echo(f"  {output.when(utc)}  /  {local[:19].replace('T', ' ')} {local[19:]}")
    interval = data.get("interval")
    if interval:
        window = interval["next_window"]
        covered = output.when(interval["completed_up_to"])
        nxt = (
            f"[{output.when(window[0])}, {output.when(window[1])})"
            if window
            else interval["next_window_skip_reason"]
        )
        click.echo(
            f"interval: {output.when(interval['start'])} .. "
            f"{output.when(interval['end']) if interval['end'] else 'open'};"
            f" completed up to {covered}; next run covers {nxt}"
        )


def _run_line(run: dict[str, Any] | None) -> str:
    if not run:
        return "never"
    return f"#{run['number']} {run['status']} at {output.when(run['created_at'])}"


def _show_runs(data: list[dict[str, Any]]) -> None:
    output.table(
        [
            [
                r["job_ref"],
                r["number"],
                r["status"],
                r["trigger"],
                output.when(r["created_at"]),
                r["exit_code"],
                r["reason"],
            ]
            for r in data
        ],
        ["job", "#", "status", "trigger", "created", "exit", "reason"],
    )


@click.command("job-run")
@click.argument("args", nargs=-1, required=True)
@click.option("-f", "--follow", "follow_logs", is_flag=True)
@runlogs.window_options
@output.workspace_option
@output.output_option
def job_run(
    args: tuple[str, ...],
    follow_logs: bool,
    head: int | None,
    tail: int | None,
    everything: bool,
    workspace: str | None,
    output_fmt: str,
) -> None:
    """`job-run list [NAME|SELECTOR]` or `job-run NAME [N] info|logs|cancel` (`logs` takes
    -f, --head, --tail, --all like `dockyard logs`)."""
    client = client_for(workspace)
    if args[0] == "list" and len(args) <= 2:
        data = client.get(f"{client.ws}/runs", job=args[1] if len(args) == 2 else None)
        output.emit_json(data) if output_fmt == "json" else _show_runs(data)
        return
    name, rest = args[0], list(args[1:])
    number = int(rest.pop(0)) if rest and rest[0].isdigit() else None
    action = rest[0] if rest else "info"
    if len(rest) > 1 or action not in ("info", "logs", "cancel"):
        raise InvalidInput("usage: dockyard job-run NAME [N] info|logs|cancel")
    if action == "logs":
        win = runlogs.window(head, tail, everything, follow_logs)
        _logs(client, name, number, follow_logs, output_fmt, win)
        return
    run = _run(client, name, number)
    if action == "cancel":
        run = {**run, **client.post(f"/api/v1/runs/{run['run_id']}/cancel")}
    if output_fmt == "json":
        output.emit_json(run)
        return
    _show_run(run)


def _show_run(run: dict[str, Any]) -> None:
    output.kv(
        [
            (k, run.get(k))
            for k in (
                "job_ref",
                "number",
                "run_id",
                "status",
                "reason",
                "trigger",
                "created_at",
                "started_at",
                "finished_at",
                "exit_code",
                "profile",
                "deployment_version",
                "configuration_version",
                "interval_start",
                "interval_end",
                "refresh",
            )
        ]
    )
    if run.get("result"):
        click.echo(output.visible(f"result: {run['result']}"))
    for p in run.get("pipelines") or []:
        tables = ", ".join(f"{t}={n}" for t, n in p["tables"].items())
        line = f"pipeline {p['pipeline']} → {p['destination']}/{p['dataset']}: {tables}"
        click.echo(output.visible(line))
