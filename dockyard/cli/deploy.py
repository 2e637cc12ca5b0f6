"""`dockyard deploy` (and the ad-hoc deploy behind `launch script.py` / `serve script.py`).

Inspect the workspace in its own Python, validate the manifest, plan against the deployed
HEAD with the controller's own `planning.plan`, then commit, push and wait until the server
has reconciled that commit.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from dockyard import errors
from dockyard.cli import deploytarget, gitpush, importcheck, sealing, workspace
from dockyard.cli.client import Client
from dockyard.controller import deployfiles, gitstore, manifests, planning, plantext
from dockyard.controller.gitstore import FileEntry
from dockyard.errors import (
    Conflict,
    DockyardError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
)

RECONCILE_WAIT_S = 120.0
# after the connection broke during a push: how long to wait for the server to answer whether
# the commit landed (a restarted server is back within seconds)
LANDED_WAIT_S = 60.0


@dataclass
class DeployResult:
    plan: planning.Plan
    manifest: dict[str, Any]
    deployment_version: str | None
    configuration_version: str | None
    committed: str | None
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False
    changed_parts: list[str] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    recorded_workspace: str | None = None  # first deploy: written to .dlt/config.toml

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.plan.as_dict(),
            "deployment_version": self.deployment_version,
            "configuration_version": self.configuration_version,
            "commit": self.committed,
            "dry_run": self.dry_run,
            "changed": self.changed_parts,
            "warnings": self.warnings,
            "recorded_workspace": self.recorded_workspace,
            "schedules": self.schedules,
        }


@dataclass(frozen=True, slots=True)
class DeployOptions:
    root: Path
    script: str | None = None
    python: str | None = None
    dry_run: bool = False
    keep_configuration: bool = False
    force: bool = False  # deploy to a workspace linked to GitHub anyway
    yes: bool = False  # a deploy that archives most jobs goes ahead without asking
    skip_import_check: bool = False  # emergencies: don't import the jobs' modules first


def deploy(client: Client, options: DeployOptions) -> DeployResult:
    deploytarget.require_workspace(client)
    home = deploytarget.check(options.root, client)
    if not (options.dry_run or options.force or options.script):
        _refuse_if_linked(client)
    worker_args, _ad_hoc = workspace.deployment_target(options.root, options.script)
    python = workspace.find_python(options.root, options.python)
    with workspace.inspect(options.root, python, worker_args) as seen:
        workspace.check_files(seen)
        manifest = manifests.canonical(seen.manifest)
        # dlt's own validator already ran inside the worker; the schema is dockyard's part
        manifests.validate_schema(manifest)
        mirror = gitpush.Mirror.open(client.server, client.target.workspace, client.target.token)
        head = mirror.fetch()
        warnings = list(seen.warnings) + _import_check(seen, python, options)
        old = _deployed_manifest(mirror, head, seen.ad_hoc, warnings)
        if seen.ad_hoc:
            manifest = planning.merge_ad_hoc(old, manifest)
        plan, manifest, files = deployfiles.planned(seen, old, manifest)
        record = None
        if not options.keep_configuration:
            files, record = deploytarget.plan_record(
                options.root, home, client.target.workspace, files
            )
        deployfiles.check_commit(files, manifest)
        warnings += sealing.profile_warnings(files, _interactive(manifest))
        if options.keep_configuration:  # `deployment sync`: code only
            files = _replace_config(files, mirror.files(head))
        else:
            files = _sealed(client, files, mirror, head)
        sha = mirror.commit(
            files, head, deployfiles.commit_message(plan, options.script if seen.ad_hoc else None)
        )
        result = DeployResult(
            plan, manifest, None, None, sha, warnings=warnings, dry_run=options.dry_run
        )
        _note_target(result, client, home)
        if sha is None:
            return _recorded(_current(client, result), record)
        result.changed_parts = mirror.changed_parts(sha, head)
        if options.dry_run:
            return _dry_run(client, result, old)
        deploytarget.confirm_archive(
            client, plan, lambda: schedule_changes(client, plan, old), options.yes
        )
        _push(client, mirror, sha, result)
    return _recorded(result, record)


def _note_target(result: DeployResult, client: Client, home: str | None) -> None:
    """Warnings about where this deploy goes: another workspace than the directory's (named
    with -w), or most jobs archived (a dry run says the deploy will ask)."""
    name = client.target.workspace
    if home is not None and home != name:
        result.warnings.append(
            f"this directory stays recorded for workspace {home!r}; -w {name} deployed it to"
            f" {name!r} this once"
        )
    if result.dry_run and deploytarget.archives_most(result.plan):
        note = deploytarget.archive_note(result.plan, name)
        result.warnings.append(f"{note}: `dockyard deploy` asks to confirm (--yes for scripts)")


def _recorded(result: DeployResult, record: deploytarget.Record | None) -> DeployResult:
    """After the deploy landed (or changed nothing): record the workspace in the directory."""
    if record is None or result.dry_run:
        return result
    problem = deploytarget.write(record)
    if problem:
        result.warnings.append(problem)
    else:
        result.recorded_workspace = record.workspace
    return result


def _dry_run(client: Client, result: DeployResult, old: dict[str, Any] | None) -> DeployResult:
    """What a deploy would do: schedules with their next fire times, versions not yet made."""
    result.schedules = schedule_changes(client, result.plan, old)
    current = _current(client, result)
    if "code" in result.changed_parts:
        current.deployment_version = None
    if "configuration" in result.changed_parts:
        current.configuration_version = None
    current.committed = None
    return current


def _import_check(seen: workspace.Inspection, python: str, options: DeployOptions) -> list[str]:
    """Each job's module imported in its own environment (a full deploy; an ad-hoc script is
    launched at once, so its run shows the same error right away)."""
    if seen.ad_hoc:
        return []
    return importcheck.check(seen, python, options.skip_import_check)


def _deployed_manifest(
    mirror: gitpush.Mirror, head: str | None, ad_hoc: bool, warnings: list[str]
) -> dict[str, Any] | None:
    """The manifest at the server's HEAD. One that cannot be read (stored before the server
    bounded manifests) is replaced by a full deploy; an ad-hoc deploy, which merges into it,
    cannot proceed."""
    try:
        return mirror.manifest(head)
    except InvalidInput as exc:
        if ad_hoc:
            raise InvalidInput(
                f"the deployed {exc.message}; run `dockyard deploy` to replace it first"
            ) from None
        warnings.append(f"the deployed {exc.message}; this deploy replaces it")
        return None


def _interactive(manifest: dict[str, Any]) -> bool:
    return any(j.get("job_type") == "interactive" for j in manifest.get("jobs", []))


def _sealed(
    client: Client, files: dict[str, FileEntry], mirror: gitpush.Mirror, head: str | None
) -> dict[str, FileEntry]:
    """The commit's files with secrets encrypted for the workspace's key."""
    if not sealing.has_secrets(files):
        return files
    return sealing.seal(files, sealing.workspace_key(client), lambda path: mirror.read(head, path))


def schedule_changes(
    client: Client, plan: planning.Plan, old: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """For `--dry-run`: schedule changes of the plan, with next fire times and, for interval
    jobs, the window the next run covers (the server knows the ledger; nothing is written)."""
    changed = plantext.to_preview(plan, old)
    out: list[dict[str, Any]] = []
    if changed:
        out = list(client.post(f"{client.ws}/schedule-preview", {"jobs": changed}))
    return out + plantext.archived_schedules(plan, old)


def _push(client: Client, mirror: gitpush.Mirror, sha: str, result: DeployResult) -> None:
    try:
        mirror.push(sha)
    except gitpush.Interrupted as exc:
        _confirm_landed(mirror, sha, exc)
        result.warnings.append(
            f"the connection broke during the push, but {sha[:12]} landed on the server"
        )
    except DockyardError as exc:
        if exc.code == Forbidden.code:  # git shows no reason for a refusal: the API says why
            client.get(f"{client.ws}/key", purpose="deploy")
        raise
    applied = wait_reconciled(client, sha)
    result.deployment_version = applied.get("deployment_version")
    result.configuration_version = applied.get("configuration_version")


def _confirm_landed(mirror: gitpush.Mirror, sha: str, exc: gitpush.Interrupted) -> None:
    """The push's answer was lost (a dropped connection, a server that crashed after moving
    the branch): ask the server whether the commit is there, waiting for it to come back."""
    click.echo(
        f"the connection broke during the push ({exc.message}); checking whether"
        f" {sha[:12]} landed…",
        err=True,
    )
    deadline = time.monotonic() + LANDED_WAIT_S
    while True:
        try:
            head = mirror.fetch()
        except Unavailable as down:
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"cannot tell whether {sha[:12]} landed: the server does not answer"
                    f" ({down.message}); once it is back, run `dockyard deploy` again (it finds"
                    " a landed commit and does not deploy it twice)"
                ) from None
            time.sleep(1.0)
            continue
        if mirror.contains(head, sha):
            return
        raise Unavailable(f"the push of {sha[:12]} did not land ({exc.message}); run deploy again")


def _replace_config(
    files: dict[str, FileEntry], other: dict[str, FileEntry]
) -> dict[str, FileEntry]:
    prefix = gitstore.CONFIG + "/"
    kept = {p: e for p, e in files.items() if not p.startswith(prefix)}
    kept.update({p: e for p, e in other.items() if p.startswith(prefix)})
    return kept


def sync_configuration(client: Client, root: Path, dry_run: bool) -> DeployResult:
    """`configuration sync`: commit the local `.dlt` configuration on top of the deployed code."""
    config = workspace.configuration_files(root)
    deploytarget.require_workspace(client)
    deploytarget.check(root, client)
    mirror = gitpush.Mirror.open(client.server, client.target.workspace, client.target.token)
    head = mirror.fetch()
    manifest = mirror.manifest(head)
    if head is None or manifest is None:
        raise NotFound("nothing is deployed yet; run `dockyard deploy` first")
    local = {
        f"{gitstore.CONFIG}/{e['path'].removeprefix('.dlt/')}": FileEntry(
            gitstore.MODE_FILE, (root / e["path"]).read_bytes()
        )
        for e in config
    }
    files = _replace_config(mirror.files(head), local)
    deployfiles.check_commit(files, manifest)
    files = _sealed(client, files, mirror, head)
    plan = planning.plan(manifest, manifest)
    sha = mirror.commit(files, head, "deploy: configuration changed\n")
    result = DeployResult(plan, manifest, None, None, sha, dry_run=dry_run)
    if sha is None or dry_run:
        result = _current(client, result)
        if sha is not None:
            result.configuration_version, result.committed = None, None
            result.changed_parts = ["configuration"]
        return result
    result.changed_parts = ["configuration"]
    _push(client, mirror, sha, result)
    return result


def _refuse_if_linked(client: Client) -> None:
    """A workspace linked to a GitHub repository is deployed from there (one source of
    truth): a deploy from a folder would be replaced by the next push. A guard against a
    mistake, not a permission: `--force` deploys anyway."""
    try:
        info = client.get(client.ws)
    except NotFound:
        return
    link = info.get("github")
    if not link:
        return
    where = f"{link['repo']}@{link['branch']}" + (f" ({link['path']})" if link.get("path") else "")
    raise Conflict(
        f"workspace {client.target.workspace} deploys from GitHub {where}: push there, or run"
        " `dockyard deploy --force` to deploy this folder anyway (the next push replaces it)"
    )


def _current(client: Client, result: DeployResult) -> DeployResult:
    info = client.get(client.ws)
    result.deployment_version = info.get("deployment_version")
    result.configuration_version = info.get("configuration_version")
    return result


def wait_reconciled(client: Client, sha: str, timeout: float = RECONCILE_WAIT_S) -> dict[str, Any]:
    """Poll until the server has applied `sha` (the push event usually does it at once)."""
    deadline = time.monotonic() + timeout
    nudged = False
    while True:
        try:
            applied: dict[str, Any] = client.get(f"{client.ws}/reconciliations/{sha}")
            return applied
        except NotFound as exc:
            if exc.code != errors.NOT_RECONCILED:
                raise DockyardError(
                    f"the server could not apply {sha[:12]}: {exc.message}"
                ) from exc
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"the server did not reconcile {sha[:12]} within"
                    f" {timeout:.0f}s; check `dockyard info`"
                ) from exc
            if not nudged and time.monotonic() > deadline - timeout + 2:
                client.post(f"{client.ws}/reconcile")
                nudged = True
            time.sleep(0.1)
