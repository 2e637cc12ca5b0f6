"""Supervises one run: starts the job in its own process group, timestamps every output
line into the run's log, and records how it ended.

It is detached from the controller (own session) and talks to it only through files in the
run directory (named and read by `rundir.py`), so a run outlives a controller restart and
is adopted afterwards:

- `spec.json`  (written by the controller) argv, cwd, env (and the niceness to run at)
- `proc.json`  (written here, atomically) child pid, its process group and start ticks
- `log.jsonl`  one JSON object per line: {"t": ISO time, "s": "out"|"err"|"sys", "m": text}
- `exit.json`  (written here, atomically, last) returncode, signal, error, finished_at

Output is cut into lines by `loglines.py`, the splitter the Docker executor uses too: lines
are bounded (`[line truncated: N bytes]`), and the secret values of the run's profile
(`dlt/.dockyard-redact.json`, written by the controller with the run's configuration; for a
held run, when it is released: read again once the job's `released` marker is there) are
replaced by `***` on the whole line before it is written, whatever the pipe cut it into.

Every process of the run dies with it. In the sandbox (`"sandboxed"` in spec.json: argv starts
bubblewrap) the job has its own PID namespace: the kernel kills all of it when the job's
process ends, and the process group recorded in proc.json is that of the sandbox's init, which
passes signals on to nothing but dies with the job. Without a sandbox the supervisor is a
child subreaper: orphans of the job (double forks, `setsid`) become its children, and when the
job's process has ended it kills every process still below it before it writes exit.json.
"""

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

PR_SET_CHILD_SUBREAPER = 36
INFO_FD = "{info_fd}"  # in a sandboxed argv: where bwrap reports its first process

if TYPE_CHECKING or __package__:  # imported by the controller or the tests
    from dockyard.shim import loglines, rundir
else:  # run as a script (`python -S supervisor.py`): its own folder is on sys.path
    import loglines
    import rundir


def now() -> str:
    return datetime.now(UTC).isoformat()


def start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def secrets_pattern(run_dir: Path) -> "loglines.Redactor | None":
    """What the run's log must hide (None: nothing)."""
    redactor = loglines.Redactor(rundir.read_redactions(run_dir))
    return redactor if redactor else None


class Log:
    def __init__(
        self,
        path: Path,
        secrets: "loglines.Redactor | None" = None,
        released: Path | None = None,
    ) -> None:
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._secrets = secrets
        # a held run's secrets (and so what its log must hide) are written when it is
        # released, before the job creates this marker and before it prints anything
        self._released = released

    def secrets(self) -> "loglines.Redactor | None":
        """What the log must hide now: read again once a held run has been released."""
        released = self._released
        if released is not None and released.exists():
            with self._lock:
                if self._released is not None:
                    self._secrets = secrets_pattern(released.parent.parent)
                    self._released = None
        return self._secrets

    def write(self, stream: str, text: str) -> None:
        """Append one line as it is (the job's lines come redacted from `pump`)."""
        line = json.dumps({"t": now(), "s": stream, "m": text}, ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def pump(self, pipe: IO[bytes], stream: str) -> None:
        """Copy one of the job's pipes into the log until it closes, line by line."""
        hiding = self.secrets()
        splitter = loglines.LineSplitter(lambda text: self.write(stream, text), hiding)
        fd = pipe.fileno()
        while chunk := os.read(fd, loglines.READ_SIZE):
            if (latest := self.secrets()) is not hiding:  # one stat per read until released
                splitter.redact_with(latest)
                hiding = latest
            splitter.feed(chunk)
        splitter.close()


def main() -> int:
    run_dir = Path(sys.argv[1])
    spec = rundir.read_spec(run_dir)
    if spec is None:
        sys.exit(f"supervisor: no readable {rundir.SPEC} in {run_dir}; the controller writes it")
    released = run_dir / rundir.JOB / rundir.RELEASED if spec.get("held") else None
    log = Log(run_dir / rundir.LOG, secrets_pattern(run_dir), released)
    sandboxed = bool(spec.get("sandboxed"))
    nice = int(spec.get("nice") or 0)
    if nice:  # the job (and this supervisor) yield the CPU to the control plane
        os.nice(nice)
        lower_autogroup("self", nice)
    become_subreaper()
    try:
        child, leader = start(spec, sandboxed)
    except OSError as exc:
        log.write("sys", f"could not start the job: {exc}")
        rundir.write_exit(run_dir, rundir.ExitStatus(127, None, str(exc)), now())
        return 1
    if nice and sandboxed:  # bwrap's --new-session makes the job a session of its own
        threading.Thread(target=lower_session, args=(leader, nice), daemon=True).start()
    rundir.write_json(
        run_dir / rundir.PROC,
        {
            "pid": leader,
            "pgid": leader,
            "ticks": start_ticks(leader),
            "supervisor_pid": os.getpid(),
            "supervisor_ticks": start_ticks(os.getpid()),
            "started_at": now(),
        },
    )
    pumps = [
        threading.Thread(target=log.pump, args=(pipe, name), daemon=True)
        for pipe, name in ((child.stdout, "out"), (child.stderr, "err"))
    ]
    for pump in pumps:
        pump.start()
    code = child.wait()
    killed = kill_descendants(os.getpid())
    if killed:
        log.write("sys", f"killed {killed} process(es) the job left running")
    for pump in pumps:
        pump.join(timeout=5)
    rundir.write_exit(run_dir, rundir.ExitStatus(**outcome(code, sandboxed)), now())
    return 0


def lower_autogroup(pid: str, nice: int) -> None:
    """With the kernel's autogroup scheduling (most distributions' default), CPU is shared
    fairly between sessions first, and a process's own niceness counts only inside its
    session: every run is a session of its own (this supervisor's; in the sandbox, bwrap's),
    so the session's niceness is what lets the server's session come first. Nothing to do
    on a kernel without autogroups."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def lower_session(leader: int, nice: int, wait_s: float = 5.0) -> None:
    """Nice the session the sandboxed job makes (`setsid`, in bwrap), once it exists."""
    mine = os.getsid(0)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            session = os.getsid(leader)
        except OSError:
            return  # it has ended already
        if session != mine:
            lower_autogroup(str(leader), nice)
            return
        time.sleep(0.005)


def start(spec: dict[str, Any], sandboxed: bool) -> "tuple[subprocess.Popen[bytes], int]":
    """The job's process and the process group its signals go to: the job itself, or in the
    sandbox bwrap's init (reported on --info-fd, in its own session)."""
    argv = list(spec["argv"])
    info_read, info_write = os.pipe() if sandboxed else (-1, -1)
    if sandboxed:
        argv = [str(info_write) if a == INFO_FD else a for a in argv]
    try:
        child = subprocess.Popen(
            argv,
            cwd=spec["cwd"],
            env=spec["env"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
            pass_fds=(info_write,) if sandboxed else (),
        )
    finally:
        if sandboxed:
            os.close(info_write)
    leader = child.pid
    if sandboxed:
        # empty when bwrap failed before it made the sandbox (its error is on stderr)
        with os.fdopen(info_read, "rb") as info, contextlib.suppress(ValueError):
            leader = int(json.loads(info.read() or b"{}").get("child-pid") or child.pid)
    return child, leader


def outcome(code: int, sandboxed: bool) -> dict[str, Any]:
    """bwrap reports a job killed by signal N as exit code 128 + N (as a shell does)."""
    if code < 0:
        return {"returncode": None, "signal": -code}
    if sandboxed and 128 < code <= 128 + 64:
        return {"returncode": None, "signal": code - 128}
    return {"returncode": code, "signal": None}


def become_subreaper() -> None:
    """Orphaned descendants of the job are re-parented here instead of to init."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: lingering processes are not tracked


def descendants(root: int) -> list[int]:
    """Every live process below `root` (from /proc: pid -> parent)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        current = frontier.pop()
        children = [pid for pid, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def kill_descendants(root: int, rounds: int = 50) -> int:
    """SIGKILL everything below `root` until nothing is left (a process forking while it is
    killed is caught in the next round); reap what was ours. Returns how many were killed."""
    killed: set[int] = set()
    for _ in range(rounds):
        alive = descendants(root)
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        reap()
        time.sleep(0.01)
    reap()
    return len(killed)


def reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


if __name__ == "__main__":
    sys.exit(main())
