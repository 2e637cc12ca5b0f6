"""Runs dlt's manifest worker or a dlt launcher in a workspace's own environment.

`from dlt.hub import run` needs the commercial `dlthub` package on a fresh interpreter, but
works once `dlt.hub.run` has been imported. This shim pre-imports it, then hands over to dlt's
own modules unchanged, so plain open-source dlt is enough.

    python dlt_shim.py launch <launcher module> --run-id … --trigger … --entry-point …
    python dlt_shim.py held <release FIFO> <released marker> <launcher module> <timeout s>
    python dlt_shim.py inspect <workspace dir> <stage dir> <module | file.py> [--no-use-all]
    python dlt_shim.py imports <stage dir> <JSON {"modules": […], "requirements": […]}>
    python dlt_shim.py distributions <top-level module name>…

`held` is a run prepared ahead of its tick: it imports dlt and the launcher and creates dlt's
run context, then waits on the run directory's `release` FIFO for one JSON line:
`{"args": [--run-id …]}` starts the launcher at once (after creating the `released` marker
in the job's own folder; `"env"`: a follow-up's `DOCKYARD_UPSTREAM_*` variables, set
first; `"config": true`: its secrets files were written at release, dlt's configuration is
read again), anything else (`{"discard": true}`, end of file when the controller is gone, or the
timeout) exits with 75 without running the job.

`inspect` selects the files dlt would ship (code: `WorkspaceFileSelector`, configuration:
`ConfigurationFileSelector`), copies them into the stage dir, runs dlt's manifest worker
there (so the manifest describes exactly the files being deployed) and exports the
requirements manifest. It prints one JSON object:
`{"files": […], "config": […], "worker": <worker output>, "requirements": …}`.
dlt's worker reports only an exception's type and text; when importing the workspace's modules
raised something other than a SyntaxError (whose text names the file and line already), the
shim adds `"where": "<file>:<line>"`, the innermost line of the workspace's own code on the
traceback, so the one-line error points at it.

`imports` is deploy's import check (`controller/importcheck.py`), run in a job's own
environment: it imports each module the way dlt's manifest worker does (pipeline execution
and framework noise suppressed) from a staged copy of the deployed files and prints
`{"modules": {name: null | {kind, missing, type, error, where}}, "extras": […]}`, `extras`
naming the requirements whose installed distribution lacks an extra they ask for.
`distributions` (no dlt needed) maps top-level import names to the distributions that
provide them, in the environment that made the manifest.
"""

import contextlib
import io
import json
import os
import runpy
import shutil
import stat
import sys
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def _prepare() -> None:
    # started by path, so sys.path[0] is this file's folder; dlt expects the workspace there
    sys.path[0] = os.getcwd()
    # pure-Python helpers dlt's file selector needs (pathspec), appended last so a copy in
    # the workspace's own environment wins
    sys.path.extend(p for p in os.environ.get("DOCKYARD_SHIM_PATHS", "").split(os.pathsep) if p)
    import dlt.hub.run  # noqa: F401


MARIMO_LAUNCHER = "dlt._workspace.deployment.launchers.marimo"


def launch(module: str, args: list[str]) -> int:
    """Run dlt's launcher as `__main__`. `sys.exit("message")` ends the run with exit code 1
    and `SystemExit: message` on stderr (Python would print the bare message), the line
    the run's reason is read from (`controller/failure.py`)."""
    if module == MARIMO_LAUNCHER:
        marimo_assets_from_its_own_server()
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            raise
        sys.stderr.write(f"SystemExit: {exc.code}\n")
        return 1
    return 0


def marimo_assets_from_its_own_server() -> None:
    """marimo's frontend from the notebook's own server unless the workspace says otherwise.

    dlt's `MarimoConfiguration.asset_url` defaults to a CDN (jsdelivr), and its launcher then
    runs `marimo … --asset-url <CDN>`: the page's scripts and styles point there, and a browser
    that cannot reach the CDN shows a blank page. marimo itself serves the frontend bundled
    in its package when no `--asset-url` is given. Only the default changes here, for this
    process: the launcher imports the class by name when it runs, so it gets this subclass,
    whose `asset_url` defaults to empty; whatever the workspace configures (`.dlt/*.toml`,
    environment, the job's own config) resolves over it as before.
    """
    from typing import Optional

    from dlt._workspace.deployment import configuration
    from dlt.common.configuration import configspec

    base = configuration.MarimoConfiguration

    @configspec
    class LocalAssets(base):  # type: ignore[valid-type,misc]
        asset_url: Optional[str] = ""  # noqa: UP045  # dlt's configspec reads the annotation

    LocalAssets.__name__ = LocalAssets.__qualname__ = base.__name__
    configuration.MarimoConfiguration = LocalAssets  # type: ignore[misc,assignment]


NOT_RELEASED = 75  # EX_TEMPFAIL: a prepared run that was never released


def _reload_configuration() -> None:
    """dlt's configuration providers read the `.dlt` folder when the run context is made;
    a held process made its context before its secrets were there."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

    context = Container()[PluggableRunContext]
    if hasattr(context, "reload_providers"):
        context.reload_providers()
    else:  # an older dlt in the workspace's environment
        context.reload()


def held(release: Path, marker: Path, launcher: str, timeout_s: float) -> int:
    import importlib
    import select

    importlib.import_module(launcher)  # the expensive part, done before the tick
    # the run context too (profile, config folder and beacon come from the environment,
    # fixed when the process was prepared): dlt's runtime initialization is another 0.1-0.2 s
    import dlt

    dlt.current.run_context()
    # non-blocking open: with no writer left (the controller died before we got here) the
    # first read is end-of-file instead of an open() that waits forever
    fd = os.open(release, os.O_RDONLY | os.O_NONBLOCK)
    line = b""
    while not line.endswith(b"\n"):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:  # a writer is there, nothing written yet: wait
            if not select.select([fd], [], [], timeout_s)[0]:
                return NOT_RELEASED  # never released in time
            continue
        if not chunk:
            return NOT_RELEASED  # no writer (any more): the controller went away
        line += chunk
    os.close(fd)
    payload = json.loads(line)
    if "args" not in payload:
        return NOT_RELEASED
    # a follow-up's upstream fields are known only at release: only those names may be set
    for name, value in (payload.get("env") or {}).items():
        if str(name).startswith("DOCKYARD_UPSTREAM_"):
            os.environ[str(name)] = str(value)
    if payload.get("config"):  # its secrets files were written just now: dlt reads them again
        _reload_configuration()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    import warnings

    # runpy warns that the launcher module was imported before it runs as __main__: on purpose
    warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
    return launch(launcher, list(payload["args"]))


def _selected(root: Path) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    from dlt._workspace.deployment.file_selector import (
        ConfigurationFileSelector,
        WorkspaceFileSelector,
    )

    context: Any = SimpleNamespace(run_dir=str(root), settings_dir=str(root / ".dlt"))
    # git's own folder never goes into a git tree
    code = [(p, r.as_posix()) for p, r in WorkspaceFileSelector(context, [".git/"])]
    config = [(p, r.as_posix()) for p, r in ConfigurationFileSelector(context)]
    return code, config


def _stage(files: list[tuple[Path, str]], target: Path) -> list[dict[str, Any]]:
    described = []
    for source, rel in files:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            link = os.readlink(source)
            os.symlink(link, dest)
            described.append({"path": rel, "size": len(link), "link": link, "exec": False})
            continue
        shutil.copy2(source, dest)
        mode = source.stat().st_mode
        described.append(
            {
                "path": rel,
                "size": source.stat().st_size,
                "link": None,
                "exec": bool(mode & stat.S_IXUSR),
            }
        )
    return described


def _worker(args: list[str]) -> tuple[int, Any]:
    from dlt.common import json as dlt_json

    out = io.StringIO()
    sys.argv = ["_manifest_worker", *args]
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_module("dlt._workspace.deployment._manifest_worker", run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    text = out.getvalue()
    return code, dlt_json.typed_loads(text) if text else {
        "error": "no output",
        "error_type": "WorkerFailed",
    }


def _locate_import_errors(stage: Path) -> dict[str, str]:
    """Wrap dlt's import of the deployment module (dlt's function, called unchanged) so that an
    exception raised while importing is located; the dict gets `where` when it was."""
    found: dict[str, str] = {}
    try:
        from dlt._workspace.deployment import manifest
    except ImportError:
        return found
    original = getattr(manifest, "import_deployment_module", None)
    if original is None:  # another dlt: the error keeps its type and text only
        return found

    def importing(name: str) -> Any:
        found.clear()
        try:
            return original(name)
        except Exception as exc:
            where = _where(exc, stage)
            if where:
                found["where"] = where
            raise

    manifest.import_deployment_module = importing  # type: ignore[assignment]
    return found


def _where(exc: BaseException, stage: Path) -> str | None:
    """`path:line` of the innermost traceback frame in a staged file (None for a SyntaxError,
    whose own text says where, or when no workspace file is on the traceback)."""
    import traceback

    if isinstance(exc, SyntaxError):
        return None
    where = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        try:
            rel = Path(frame.f_code.co_filename).resolve().relative_to(stage)
        except ValueError:
            continue
        where = f"{rel.as_posix()}:{line}"
    return where


def inspect(root: Path, stage: Path, args: list[str]) -> int:
    code_files, config_files = _selected(root)
    payload: dict[str, Any] = {
        "files": _stage(code_files, stage),
        "config": _stage([(p, f".dlt/{r}") for p, r in config_files], stage),
    }
    (stage / ".dlt").mkdir(exist_ok=True)
    (stage / ".dlt" / ".workspace").touch()
    os.chdir(stage)
    sys.path[0] = str(stage)
    located = _locate_import_errors(stage)
    rc, payload["worker"] = _worker(args)
    if rc != 0 and isinstance(payload["worker"], dict) and "where" in located:
        payload["worker"]["where"] = located["where"]
    if rc == 0:
        try:
            from dlt._workspace.deployment.requirements import export_workspace_requirements

            payload["requirements"] = export_workspace_requirements(stage)
        except Exception as exc:
            payload["worker"] = {"error": str(exc), "error_type": type(exc).__qualname__}
            rc = 1
    sys.stdout.write(json.dumps(payload, default=_jsonable))
    return rc


def imports(stage: Path, request: dict[str, Any]) -> int:
    """Import each module from the staged copy; report what failed and missing extras."""
    os.chdir(stage)
    sys.path[0] = str(stage)
    saved = os.dup(1)
    os.dup2(2, 1)  # anything the imports print goes to stderr, the answer alone to stdout
    try:
        modules = {name: _import_one(name, stage) for name in request["modules"]}
        extras = [e for e in map(_missing_extras, request.get("requirements", [])) if e]
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
    os.write(saved, json.dumps({"modules": modules, "extras": extras}).encode())
    return 0


def _import_one(name: str, stage: Path) -> dict[str, Any] | None:
    import importlib

    try:
        from dlt._workspace.deployment import manifest
    except ImportError:  # another dlt: a plain import
        manifest = None  # type: ignore[assignment]
    # the way dlt's manifest worker imports: pipeline execution and framework noise suppressed
    importing = getattr(manifest, "import_deployment_module", importlib.import_module)
    try:
        importing(name)
    except (Exception, SystemExit) as exc:  # a module may raise anything, exit() too
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        return {
            "kind": "missing" if missing else "error",
            "missing": missing,
            "type": type(exc).__qualname__,
            "error": str(exc)[:2000],
            "where": _syntax(exc, stage) if isinstance(exc, SyntaxError) else _where(exc, stage),
        }
    return None


def _syntax(exc: SyntaxError, stage: Path) -> str | None:
    """A SyntaxError's own file and line (it is not on its traceback)."""
    if not exc.filename:
        return None
    path = Path(exc.filename)
    with contextlib.suppress(ValueError):
        path = path.resolve().relative_to(stage)
    return f"{path.as_posix()}:{exc.lineno}"


def _missing_extras(spec: str) -> dict[str, Any] | None:
    """The extras `spec` asks for that its installed distribution does not provide."""
    import re
    from importlib import metadata

    # PEP 508's name and extras (the shim imports the standard library only)
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", spec)
    if found is None or not found.group(2):
        return None
    name, extras = found.group(1), [e.strip() for e in found.group(2).split(",") if e.strip()]
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None  # not installed here (a marker for another platform): nothing to say
    provided = {_canonical(e) for e in dist.metadata.get_all("Provides-Extra") or []}
    missing = sorted(e for e in extras if _canonical(e) not in provided)
    if not missing:
        return None
    return {"requirement": spec, "package": name, "version": dist.version, "missing": missing}


def _canonical(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def distributions(names: list[str]) -> int:
    """Top-level import name → the distributions that provide it, in this environment."""
    from importlib import metadata

    known = metadata.packages_distributions()
    found = {name: sorted(set(known.get(name, []))) for name in names}
    sys.stdout.write(json.dumps(found))
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _renice_session() -> None:
    """A run is a session of its own (in the sandbox, bwrap's): with the kernel's autogroups
    its session's niceness is what lets the server come first. Set here, before dlt is
    imported, so it holds from the job's first line (the supervisor sets it too, later)."""
    nice = os.environ.get("DOCKYARD_RUN_NICE")
    if nice and nice.isdigit():
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text(nice)


def main() -> int:
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "distributions":  # no dlt: only the environment's metadata
        return distributions(rest)
    _renice_session()
    _prepare()
    if command == "launch":
        return launch(rest[0], rest[1:])
    if command == "held":
        return held(Path(rest[0]), Path(rest[1]), rest[2], float(rest[3]))
    if command == "inspect":
        return inspect(Path(rest[0]).resolve(), Path(rest[1]).resolve(), rest[2:])
    if command == "imports":
        return imports(Path(rest[0]).resolve(), json.loads(rest[1]))
    sys.stderr.write(f"unknown shim command {command!r}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
