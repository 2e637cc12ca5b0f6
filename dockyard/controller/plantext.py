"""The words of a deploy plan: the lines `dockyard deploy --dry-run` prints, and what GitHub
shows of a deploy or a pull request's plan (a short summary for a commit status, Markdown
details for a check run or a PR comment). One renderer for both, so a pull request shows
exactly what `deploy --dry-run` would; pure (no I/O, no clock).

Schedule entries are `schedulepreview`'s: `{job_ref, old_triggers, new_triggers,
next_fire_at: {trigger: iso | None}, next_window: [start, end] | None}`; `to_preview` picks the
definitions worth previewing and `archived_schedules` adds the timed jobs a plan stops.
"""

import json
from typing import Any

from dockyard.controller import dltadapter, planning

TIMED = ("schedule:", "every:", "once:")
SUMMARY_MAX = 140  # GitHub cuts a commit status description at 140 characters
DETAILS_MAX = 60_000  # a PR comment and a check run summary hold 65,535


def timed(job: dict[str, Any] | None) -> list[str]:
    return [t for t in (job or {}).get("triggers") or [] if str(t).startswith(TIMED)]


def to_preview(plan: planning.Plan, old: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The added and updated definitions whose timed triggers change, or that have an
    interval (their next window is news)."""
    before = planning.jobs_by_ref(old)
    return [
        c.new
        for c in plan.changes
        if c.kind in ("added", "updated")
        and c.new is not None
        and (timed(c.new) != timed(before.get(c.job_ref)) or c.new.get("interval"))
    ]


def archived_schedules(plan: planning.Plan, old: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Schedule entries for archived jobs that had timed triggers: they stop firing."""
    before = planning.jobs_by_ref(old)
    return [
        {
            "job_ref": ref,
            "old_triggers": timed(before.get(ref)),
            "new_triggers": [],
            "next_fire_at": {},
            "next_window": None,
        }
        for ref in plan.refs("archived")
        if timed(before.get(ref))
    ]


def when(iso: str | None) -> str:
    return iso[:19].replace("T", " ") if iso else "-"


def lines(plan: planning.Plan, schedules: list[dict[str, Any]]) -> list[str]:
    """What `deploy --dry-run` prints of a plan: one line per changed job, per schedule
    change (with next fire times) and interval window, and the unchanged count."""
    out = [
        f"  {kind:<9} {ref}" for kind in ("added", "updated", "archived") for ref in plan.refs(kind)
    ]
    for change in schedules:
        old = ", ".join(change["old_triggers"]) or "none"
        new = ", ".join(change["new_triggers"]) or "none (stops firing)"
        nexts = ", ".join(when(at) + " UTC" for at in change["next_fire_at"].values() if at)
        line = f"  schedule  {change['job_ref']}: {old} -> {new}"
        out.append(line + (f"; next {nexts}" if nexts else ""))
        if change.get("next_window"):
            start, end = change["next_window"]
            out.append(
                f"  window    {change['job_ref']}: next run covers [{when(start)}, {when(end)}) UTC"
            )
    unchanged = len(plan.refs("unchanged"))
    if unchanged:
        out.append(f"  unchanged {unchanged} job(s)")
    return out


def next_runs(schedules: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(job short name, first next fire time) of each job the plan schedules, soonest first."""
    found = []
    for change in schedules:
        times = sorted(at for at in change["next_fire_at"].values() if at)
        if times:
            found.append((times[0], dltadapter.short_name(change["job_ref"])))
    return [(name, at) for at, name in sorted(found)]


def summary(plan: planning.Plan, schedules: list[dict[str, Any]]) -> str:
    """`2 added, 1 updated, 1 archived; next run daily_load 2026-12-04 06:00 UTC`, at most
    140 characters (the rest of the next runs becomes `+N more`)."""
    text = plan.summary()
    runs = next_runs(schedules)
    if not runs:
        return clip(text, SUMMARY_MAX)
    label = "; next run " if len(runs) == 1 else "; next runs "
    shown: list[str] = []
    for i, (name, at) in enumerate(runs):
        more = len(runs) - i - 1
        candidate = [*shown, f"{name} {when(at)[:16]} UTC"]
        tail = f" +{more} more" if more else ""
        if len(text + label + ", ".join(candidate) + tail) > SUMMARY_MAX:
            break
        shown = candidate
    left = len(runs) - len(shown)
    if not shown:
        return clip(f"{text}; {left} schedule(s) change", SUMMARY_MAX)
    return clip(text + label + ", ".join(shown) + (f" +{left} more" if left else ""), SUMMARY_MAX)


def field_changes(plan: planning.Plan) -> dict[str, list[dict[str, str]]]:
    """Each updated job's changed fields, old → new: `{job_ref: [{field, old, new}]}`, each
    value compact JSON cut to `VALUE_MAX` characters; the fields that describe configuration
    (`inputs`, `config_keys`) by key names only (values live in the sealed config files)."""
    return {
        c.job_ref: [
            {
                "field": name,
                "old": shown_value(name, (c.old or {}).get(name)),
                "new": shown_value(name, (c.new or {}).get(name)),
            }
            for name in c.changed_fields
        ]
        for c in plan.changes
        if c.kind == "updated" and c.changed_fields
    }


VALUE_MAX = 80
KEYS_ONLY = ("inputs", "config_keys")


def shown_value(name: str, value: Any) -> str:
    """A field's value for people: `(none)`, or compact JSON of at most `VALUE_MAX`."""
    if value is None:
        return "(none)"
    if name in KEYS_ONLY:
        value = key_names(value)
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return clip(text, VALUE_MAX)


def key_names(value: Any) -> list[str]:
    """The key names of a config field: a JSON schema's properties, a mapping's keys or the
    items of a list of names."""
    if isinstance(value, dict):
        props = value.get("properties")
        return sorted(str(k) for k in (props if isinstance(props, dict) else value))
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def clip(text: str, limit: int) -> str:
    """One line of at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def details(
    title: str,
    plan: planning.Plan,
    schedules: list[dict[str, Any]],
    url: str | None,
    notes: list[str] | tuple[str, ...] = (),
) -> str:
    """Markdown: a title, the summary, the `deploy --dry-run` lines in a code block, the next
    runs as a table, notes (one paragraph each) and a link to the dashboard."""
    parts = [f"### {title}", "", f"**{plan.summary()}**", "", "```", *lines(plan, schedules), "```"]
    runs = next_runs(schedules)
    if runs:
        parts += ["", "| job | next run (UTC) |", "|---|---|"]
        parts += [f"| `{name}` | {when(at)} |" for name, at in runs]
    for note in notes:
        parts += ["", clip(note, 2000)]
    if url:
        parts += ["", f"[Deployments on dockyard]({url})"]
    return clip_block("\n".join(parts) + "\n")


def failure(title: str, reason: str, fix: str = "") -> str:
    """Markdown for a refused commit: the one-line reason (it names the file and key, or the
    file and line, and the fix) and what stays running."""
    shown = clip(reason, 2000).lstrip("`~ ")  # one line that cannot close the fence
    parts = [f"### {title}", "", "```", shown, "```", ""]
    parts.append(fix or "Nothing changed on the server: jobs keep running the deployed version.")
    return "\n".join(parts) + "\n"


def clip_block(text: str) -> str:
    if len(text) <= DETAILS_MAX:
        return text
    return text[:DETAILS_MAX] + "\n```\n\n(cut: the plan is longer than a comment holds)\n"
