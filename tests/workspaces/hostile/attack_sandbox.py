"""Jobs that try to reach the control plane from inside a run, and to outlive their run.

`sandbox_escape` finds the server's data dir from its own paths (its configuration folder is
`<data>/runs/<run id>/dlt`) and tries to read the keys, the database, other workspaces'
repositories, data and runs, the server's environment through /proc, and the Docker socket;
it also checks that what it is allowed to use still works. Extra paths to try (another run's
decrypted configuration, say) come from `targets.json` (`{"data": …, "paths": […]}`), which a
test may add before deploying.

The `sandbox_linger_*` jobs leave processes behind (`setsid`, a double fork, a plain child),
each carrying `dockyard-linger-<run id>` on its command line so a test can look for them.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from dlt.hub import run


def _probe(name: str, attack: bool, action) -> None:  # type: ignore[no-untyped-def]
    try:
        detail = action()
    except OSError as exc:
        outcome = "denied" if attack else f"failed {type(exc).__name__}: {exc}"
    else:
        outcome = f"LEAKED {str(detail)[:80]!r}" if attack else "ok"
    print(f"PROBE {name} {outcome}", flush=True)


def _read(path: Path) -> bytes:
    return path.read_bytes()[:64]


def _write(path: Path) -> str:
    path.write_text("written by a job")
    path.unlink()
    return str(path)


def _server_environ() -> str:
    """Any process of the host whose environment names a dockyard token or key."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if b"DOCKYARD_ADMIN_TOKEN" in environ or b"DOCKYARD_MASTER_KEY" in environ:
                return f"pid {entry}"
    raise PermissionError("no process with the server's environment is visible")


def _docker() -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect("/var/run/docker.sock")
    return "connected"


def _attacks(data: Path) -> dict[str, object]:
    return {
        "read_session_key": lambda: _read(data / "session.key"),
        "read_master_key": lambda: _read(data / "master.key"),
        "read_beacon_key": lambda: _read(data / "beacon.key"),
        "read_database": lambda: _read(data / "dockyard.db"),
        "list_data_dir": lambda: os.listdir(data),
        "list_repositories": lambda: os.listdir(data / "repos"),
        "list_runs": lambda: os.listdir(data / "runs"),
        "list_workspace_data": lambda: os.listdir(data / "var"),
        "list_checkouts": lambda: os.listdir(data / "checkouts"),
        "write_repositories": lambda: _write(data / "repos" / "planted"),
        "server_environ": _server_environ,
        "docker_socket": _docker,
    }


def _allowed() -> dict[str, object]:
    config = Path(os.environ["DLT_CONFIG_FOLDER"])
    pipelines = Path(os.environ["DLT_DATA_DIR"])
    return {
        "own_configuration": lambda: _read(config / "config.toml"),
        "own_data": lambda: (pipelines.mkdir(parents=True, exist_ok=True), _write(pipelines / "x")),
        # a name no host path has: the sandbox's /tmp holds the mount points of host folders
        # under /tmp (a checkout at /tmp/x makes /tmp/x a directory in there)
        "own_tmp": lambda: _write(Path(os.environ.get("TMPDIR", "/tmp")) / "dockyard-probe"),
        "own_home": lambda: _write(Path(os.environ["HOME"]) / "dockyard-probe"),
        "network": lambda: socket.getaddrinfo("localhost", 80),
    }


@run.job
def sandbox_escape() -> None:
    given = json.loads(Path("targets.json").read_text()) if Path("targets.json").exists() else {}
    # <data>/runs/<run id>/dlt on the host; a container sees /run/dlt: there the attacker
    # aims at the host's data dir by name (as one who read the server's docs would)
    data = Path(os.environ["DLT_CONFIG_FOLDER"]).resolve().parents[2:3]
    data = Path(given["data"]) if "data" in given else data[0]
    print(f"PROBE uid {os.getuid()}", flush=True)
    # how it shares the CPU with the server: its niceness, and its session's (autogroups)
    group = Path("/proc/self/autogroup")
    niced = group.read_text().split()[-1] if group.exists() else "none"
    print(f"PROBE priority {os.getpriority(os.PRIO_PROCESS, 0)}/{niced}", flush=True)
    for name, action in _attacks(data).items():
        _probe(name, True, action)
    for index, target in enumerate(given.get("paths", [])):
        _probe(f"target_{index}", True, lambda t=target: _read(Path(t)))  # type: ignore[misc]
    _probe("write_checkout", True, lambda: _write(Path.cwd() / "planted.py"))
    _probe("write_environment", True, lambda: _write(Path(sys.prefix) / "planted"))
    for name, action in _allowed().items():
        _probe(name, False, action)


def _linger() -> None:
    """Three ways to outlive a run: setsid, a double fork into a new session, a plain child."""
    mark = f"dockyard-linger-{os.environ['DOCKYARD_RUN_ID']}"
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)", mark]
    subprocess.Popen(["setsid", *sleeper], start_new_session=True)
    subprocess.Popen(sleeper)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, sleeper)
        os._exit(0)
    time.sleep(1)
    print(f"PROBE lingering {mark}", flush=True)


@run.job
def sandbox_linger_exit() -> None:
    """Leaves its processes behind and ends at once."""
    _linger()


@run.job
def sandbox_linger_sleep() -> None:
    """Leaves its processes behind and waits to be cancelled."""
    _linger()
    time.sleep(600)


@run.job(execute={"timeout": {"timeout": 6, "grace_period": 2}})
def sandbox_linger_timeout() -> None:
    """Leaves its processes behind and runs past its timeout (ignoring SIGTERM)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _linger()
    time.sleep(600)


__all__ = [
    "sandbox_escape",
    "sandbox_linger_exit",
    "sandbox_linger_sleep",
    "sandbox_linger_timeout",
]
