"""Runs dlt's manifest worker or a dlt launcher in a workspace's own environment.

`from dlt.hub import run` needs the commercial `dlthub` package on a fresh interpreter, but
works once `dlt.hub.run` has been imported. This shim pre-imports it, then hands over to dlt's
own modules unchanged, so plain open-source dlt is enough.

    python dlt_shim.py launch <launcher module> --run-id … --trigger … --entry-point …
    python dlt_shim.py held <release FIFO> <released marker> <launcher module> <timeout s>
    python dlt_shim.py inspect <workspace dir> <stage dir> <module | file.py> [--no-use-all]

`held` is a run prepared ahead of its tick: it imports dlt and the launcher and creates dlt's
run context, then waits on the run directory's `release` FIFO for one JSON line:
`{"args": [--run-id …]}` starts the launcher at once (after creating the `released` marker
in the job's own folder), anything else (`{"discard": true}`, end of file when the controller
is gone, or the timeout) exits with 75 without running the job.

`inspect` selects the files dlt would ship (code: `WorkspaceFileSelector`, configuration:
`ConfigurationFileSelector`), copies them into the stage dir, runs dlt's manifest worker
there (so the manifest describes exactly the files being deployed) and exports the
requirements manifest. It prints one JSON object:
`{"files": […], "config": […], "worker": <worker output>, "requirements": …}`.
dlt's worker reports only an exception's type and text; when importing the workspace's modules
raised something other than a SyntaxError (whose text names the file and line already), the
shim adds `"where": "<file>:<line>"`, the innermost line of the workspace's own code on the
traceback, so the one-line error points at it.
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


def launch(module: str, args: list[str]) -> None:
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


NOT_RELEASED = 75  # EX_TEMPFAIL: a prepared run that was never released


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
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    import warnings

    # runpy warns that the launcher module was imported before it runs as __main__: on purpose
    warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
    launch(launcher, list(payload["args"]))
    return 0


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


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def main() -> int:
    _prepare()
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "launch":
        launch(rest[0], rest[1:])
        return 0
    if command == "held":
        return held(Path(rest[0]), Path(rest[1]), rest[2], float(rest[3]))
    if command == "inspect":
        return inspect(Path(rest[0]).resolve(), Path(rest[1]).resolve(), rest[2:])
    sys.stderr.write(f"unknown shim command {command!r}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
