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
    served, run = commands_apps.wait_served(client, target, SERVE_WAIT_S)
    url, mcp_url = served["url"], served.get("mcp_url")
    if output_fmt == "json":
        output.emit_json({**run, "url": url, "mcp_url": mcp_url})
    else:
        click.echo(f"{run['job_ref']} run #{run['number']} serving at {url}")
        if mcp_url:
            click.echo(f"MCP endpoint (streamable HTTP): {mcp_url}")
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
        click.echo(f"{entry['status']:<14} {entry['job_ref']} {number} ({_matched(entry)})")


def _matched(entry: dict[str, Any]) -> str:
    """The trigger the selectors matched, and the one the run fires with when they differ
    (a manual start of a scheduled job fires as its schedule, for the interval)."""
    hit = entry.get("matched_trigger") or entry["trigger"]
    if hit == entry["trigger"]:
        return f"matched {hit}"
    return f"matched {hit}; runs as {entry['trigger']}"


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
    if run["status"] == "skipped" and fmt != "json":
        # a skipped run never ran: no log, but the reason it did not
        click.echo(
            output.visible(
                f"run #{run['number']} of {run['job_ref']} was skipped: "
                f"{run['reason'] or 'no reason recorded'}"
            )
        )
        return
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
    named = any(j.get("display_name") for j in data)
    output.table(
        [
            [
                j["name"],
                *([j.get("display_name")] if named else []),
                j["job_type"],
                "paused" if j["paused_at"] and j["status"] == "active" else j["status"],
                ", ".join(j["triggers_humanized"]) or "manual",
                _next_run(j),
                j["tags"],
                (j["last_run"] or {}).get("status"),
                output.when((j["last_run"] or {}).get("created_at")),
            ]
            for j in data
        ],
        [
            "job",
            *(["display name"] if named else []),
            "type",
            "status",
            "triggers",
            "next run",
            "tags",
            "last run",
            "at",
        ],
    )


def _next_run(job: dict[str, Any]) -> str:
    if job["paused_at"] and job["status"] == "active":
        return "paused"
    return output.when(job["next_fire_at"])


USAGE = (
    "usage: dockyard job [NAME|SELECTOR…] list | dockyard job NAME|SELECTOR info"
    " | dockyard job NAME pause|resume"
)


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1, required=True)
@output.workspace_option
@output.output_option
def job(args: tuple[str, ...], workspace: str | None, output_fmt: str) -> None:
    """`job [NAME|SELECTOR…] list`, `job NAME|SELECTOR info`, or `job NAME pause|resume` (its
    timed triggers). Selectors are dlt's: `tag:x`, `batch`, `schedule:*`, `jobs.sec.*`, …"""
    client = client_for(workspace)
    *targets, action = args
    if action == "list":
        data = client.get(f"{client.ws}/jobs", selector=targets or None)
        output.emit_json(data) if output_fmt == "json" else _show_jobs(data)
        return
    if action == "info" and targets:
        _job_info(client, targets, output_fmt)
        return
    if len(targets) == 1 and action in ("pause", "resume"):
        _one_name(targets[0], action)
        data = client.post(f"{client.ws}/jobs/{targets[0]}/{action}")
        if output_fmt == "json":
            output.emit_json(data)
            return
        state = f"paused since {output.when(data['paused_at'])}" if data["paused_at"] else "active"
        click.echo(f"{data['job_ref']}: timed triggers {state}")
        return
    raise InvalidInput(USAGE)


def _one_name(target: str, action: str) -> None:
    from dockyard.controller import dltadapter

    if dltadapter.is_selector(target):
        raise InvalidInput(
            f"{action} takes one job name, not a selector ({target!r});"
            " `dockyard job SELECTOR list` shows the names"
        )


def _job_info(client: Client, targets: list[str], fmt: str) -> None:
    """One job's info (a JSON object); for selectors, each matched job's (a JSON list)."""
    from dockyard.controller import dltadapter  # dlt's own rule of what is a selector

    if len(targets) == 1 and not dltadapter.is_selector(targets[0]):
        one = client.get(f"{client.ws}/jobs/{targets[0]}")
        output.emit_json(one) if fmt == "json" else _show_job(one)
        return
    refs = [j["job_ref"] for j in client.get(f"{client.ws}/jobs", selector=targets)]
    if not refs:
        raise InvalidInput(
            f"no job matches {' '.join(targets)}; `dockyard job list` shows jobs and triggers"
        )
    found = [client.get(f"{client.ws}/jobs/{ref}") for ref in refs]
    if fmt == "json":
        output.emit_json(found)
        return
    for index, one in enumerate(found):
        if index:
            click.echo("")
        _show_job(one)


def _placement(where: dict[str, Any] | None) -> str:
    """`pool big, labels region=eu (no rule for provider=gcp)`."""
    if not where:
        return "-"
    if where.get("error"):
        return str(where["error"])
    text = f"pool {where['pool']}"
    if where["labels"]:
        text += ", labels " + ", ".join(f"{k}={v}" for k, v in sorted(where["labels"].items()))
    if where["unmapped"]:
        text += f" (no rule for {', '.join(where['unmapped'])})"
    return text


def _show_job(data: dict[str, Any]) -> None:
    freshness = data["freshness"]
    gate = (
        "no gate"
        if not freshness["constraints"]
        else ("fresh" if freshness["fresh"] else f"not fresh: {freshness['reason']}")
    )
    paused = (
        f"since {output.when(data['paused_at'])} by {data['paused_by']}"
        if data["paused_at"]
        else "no"
    )
    output.kv(
        [
            ("job", data["job_ref"]),
            *([("display name", data["display_name"])] if data.get("display_name") else []),
            ("type", data["job_type"]),
            ("status", data["status"]),
            ("paused", paused),
            ("description", data["description"]),
            ("triggers", data["triggers_humanized"] or ["manual only"]),
            ("default trigger", data["default_trigger"]),
            ("tags", data["tags"]),
            ("timezone", data["timezone"]),
            ("concurrency", data["concurrency"] or "unlimited"),
            ("freshness", gate),
            ("refresh pending", data["refresh_pending"]),
            ("placement", _placement(data.get("placement"))),
            ("runs", data["run_count"]),
            ("last run", _run_line(data["last_run"])),
            ("next run", _next_run(data)),
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
    line = f"#{run['number']} {run['status']} at {output.when(run['created_at'])}"
    return line + (f": {run['reason']}" if run.get("reason") else "")


def _show_runs(data: list[dict[str, Any]]) -> None:
    output.table(
        [
            [
                r["job_ref"],
                r["number"],
                r["status"],
                trigger_text(r),
                r.get("triggered_by"),
                output.when(r["created_at"]),
                r["exit_code"],
                r["reason"],
            ]
            for r in data
        ],
        ["job", "#", "status", "trigger", "by", "created", "exit", "reason"],
    )


def trigger_text(run: dict[str, Any]) -> str:
    """`manual` for a run a person launched (its `trigger` is then the job's default, what
    dlt's launcher gets), else the trigger that fired."""
    return "manual" if run.get("manual") else str(run["trigger"])


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
    """`job-run list [NAME|SELECTOR]` or `job-run NAME [N] info|logs|cancel|rerun` (`logs`
    takes -f, --head, --tail, --all like `dockyard logs`; `rerun` runs a finished run again)."""
    client = client_for(workspace)
    if args[0] == "list" and len(args) <= 2:
        data = client.get(f"{client.ws}/runs", job=args[1] if len(args) == 2 else None)
        output.emit_json(data) if output_fmt == "json" else _show_runs(data)
        return
    name, rest = args[0], list(args[1:])
    number = int(rest.pop(0)) if rest and rest[0].isdigit() else None
    action = rest[0] if rest else "info"
    if len(rest) > 1 or action not in ("info", "logs", "cancel", "rerun"):
        raise InvalidInput("usage: dockyard job-run NAME [N] info|logs|cancel|rerun")
    if action == "logs":
        win = runlogs.window(head, tail, everything, follow_logs)
        _logs(client, name, number, follow_logs, output_fmt, win)
        return
    run = _run(client, name, number)
    if action == "rerun":
        _rerun(client, run, output_fmt)
        return
    if action == "cancel":
        run = {**run, **client.post(f"/api/v1/runs/{run['run_id']}/cancel")}
    if output_fmt == "json":
        output.emit_json(run)
        return
    _show_run(run)


def _rerun(client: Client, run: dict[str, Any], fmt: str) -> None:
    made: dict[str, Any] = client.post(f"/api/v1/runs/{run['run_id']}/rerun")
    if fmt == "json":
        output.emit_json(made)
        return
    what = f"run #{made['number']} of {made['job_ref']} (re-run of #{run['number']})"
    if made["status"] == "skipped":
        click.echo(f"skipped {what}: {made['skip_reason']}")
    else:
        click.echo(f"started {what}")


def _link(ref: dict[str, Any] | None) -> str | None:
    return None if ref is None else f"{ref['job_ref']} #{ref['number']} ({ref['status']})"


def _links(links: dict[str, Any]) -> list[tuple[str, Any]]:
    """Cause and effect: what started this run, what it started, its re-runs (rows shown
    only when there is something to link)."""
    rows = [
        ("follow-up of", _link(links.get("cause"))),
        ("started", [_link(r) for r in links.get("follow_ups") or []] or None),
        ("re-run of", _link(links.get("rerun_of"))),
        ("re-run as", [_link(r) for r in links.get("reruns") or []] or None),
    ]
    return [(k, v) for k, v in rows if v]


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
                "waiting",
                "trigger",
                "manual",
                "triggered_by",
                "cancelled_by",
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
        + _links(run.get("links") or {})
    )
    if run.get("traceback"):
        click.echo("traceback (its end):")
        for line in str(run["traceback"]).splitlines():
            click.echo(output.visible(f"  {line}"))
    if run.get("result"):
        click.echo(output.visible(f"result: {run['result']}"))
    for p in run.get("pipelines") or []:
        tables = ", ".join(f"{t}={n}" for t, n in p["tables"].items())
        line = f"pipeline {p['pipeline']} → {p['destination']}/{p['dataset']}: {tables}"
        click.echo(output.visible(line))
