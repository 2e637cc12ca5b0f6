"""Shared helpers for the benchmarks: a real server process, the real CLI, statistics, the
machine description and the printed report.

Benchmarks print figures and ratios against a floor measured in the same run; nothing here
asserts on time (timed assertions never go into tests). The machine has few, shared cores,
so every figure is a median over several repetitions.
"""

import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
ADMIN_TOKEN = "dy_bench_admin_token_0123456789"
PYCACHE = Path(tempfile.gettempdir()) / "dockyard-bench-pycache"
T = TypeVar("T")


# statistics ------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def p90(values: Sequence[float]) -> float:
    """Nearest-rank 90th percentile (with 10 samples: the second largest)."""
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)])


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, `q` in (0, 100] (p99 of fewer than 100 samples is the max)."""
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)])


def spread(values: Sequence[float]) -> dict[str, float]:
    """Count, p50 (the median), p90, p99 and max of a set of samples."""
    return {
        "n": len(values),
        "p50": median(values),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def timed(func: Callable[[], T]) -> tuple[float, T]:
    """Wall time of one call (seconds) and its result."""
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def time_command(
    argv: Sequence[str],
    repeat: int,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    warmup: int = 1,
) -> list[float]:
    """Wall times of a command run `repeat` times (after `warmup` untimed runs)."""
    times: list[float] = []
    for i in range(warmup + repeat):
        elapsed, proc = timed(
            lambda: subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
        if i >= warmup:
            times.append(elapsed)
    return times


def parse_time(text: str) -> float:
    """An ISO 8601 timestamp with offset as POSIX seconds."""
    return datetime.fromisoformat(text).timestamp()


# the machine ---------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    """CPU model, cores, RAM, Python and date: printed with every figure."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                ram_kib = int(line.split()[1])
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": f"{ram_kib / 1024 / 1024:.1f} GiB",
        "python": f"{platform.python_version()} ({PYTHON})",
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        # other work on the machine at the time (the cores are shared)
        "load average (1 min)": Path("/proc/loadavg").read_text().split()[0],
    }


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/<pid>/stat after the command name: [0] is field 3 of proc(5) (state), [1] the
    parent, [11] [12] utime and stime, [13] [14] the reaped children's, in clock ticks."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used, from /proc/<pid>/stat."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(roots: Sequence[int]) -> float:
    """CPU seconds of `roots` and every live descendant, each with its reaped children's
    (a child that exits moves its time into its parent's: the sum stays continuous)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(entry.name)
        except OSError:
            continue  # gone meanwhile
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    ours = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in ours and pid not in ours:
                ours.add(pid)
                grew = True
    return sum(times.get(pid, 0.0) for pid in ours)


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat: not idle, not iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class OtherLoad:
    """What the rest of the machine used while a benchmark ran: CPU of every process outside
    the benchmark's own trees (`roots` and their descendants), per second, in % of a core.
    On a shared machine a tail figure means little without it."""

    roots: list[int]
    per_s: list[tuple[float, float]] = field(default_factory=list)  # (unix time, % of a core)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "OtherLoad":
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def _loop(self) -> None:
        busy, ours = machine_busy_s(), tree_cpu_s(self.roots)
        while not self._stop.wait(1.0):
            now_busy, now_ours = machine_busy_s(), tree_cpu_s(self.roots)
            other = max(0.0, (now_busy - busy) - (now_ours - ours))
            self.per_s.append((time.time(), 100 * other))
            busy, ours = now_busy, now_ours

    def stop(self) -> None:
        self._stop.set()

    def summary(self, over_pct: float = 25.0) -> str:
        if not self.per_s:
            return "not sampled"
        values = [v for _, v in self.per_s]
        busy = sum(1 for v in values if v > over_pct)
        return (
            f"mean {statistics.fmean(values):.0f} %, max {max(values):.0f} % of a core;"
            f" {busy} of {len(values)} s above {over_pct:.0f} %"
        )


def wait_idle(
    pid: int, step_s: float = 5.0, idle_cpu_s: float = 0.1, timeout_s: float = 300.0
) -> tuple[float, float]:
    """Wait until a process uses at most `idle_cpu_s` CPU seconds in `step_s` (a deploy
    leaves background work behind: the runner builds the jobs' environments). Returns the
    seconds waited and the CPU seconds the process used meanwhile."""
    start, cpu_start = time.monotonic(), process_cpu_s(pid)
    while time.monotonic() - start < timeout_s:
        before = process_cpu_s(pid)
        time.sleep(step_s)
        if process_cpu_s(pid) - before <= idle_cpu_s:
            break
    return time.monotonic() - start, process_cpu_s(pid) - cpu_start


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (/proc/stat, first line)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class MachineCpu:
    """How busy the whole machine (every core, every process) was since it was made."""

    start: tuple[int, int] = field(default_factory=_cpu_jiffies)

    def busy_percent(self) -> float:
        busy, total = _cpu_jiffies()
        return 100.0 * (busy - self.start[0]) / max(1, total - self.start[1])

    def describe(self) -> str:
        cores = os.cpu_count() or 1
        return f"{self.busy_percent():.0f} % of {cores} cores (this benchmark included)"


def print_machine() -> None:
    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))


# the report ----------------------------------------------------------------------------------
@dataclass
class Report:
    """One benchmark's figures: printed as text, or written as JSON for `run_all.py`."""

    name: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, label: str, value: object, key: str | None = None) -> None:
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        self.rows.append((label, text))
        if key is not None:
            self.figures[key] = value

    def headline(
        self,
        values: Sequence[float],
        floor: Sequence[float],
        target: float,
        over_floor: bool,
    ) -> None:
        """The standard figures: median, p90, floor, difference, ratio, target, verdict.

        `target` is a bound on the difference to the floor (`over_floor`) or on the median.
        """
        mid, low = median(values), median(floor)
        self.figures["samples"] = [round(v, 4) for v in values]
        self.figures["floor_samples"] = [round(v, 4) for v in floor]
        checked = mid - low if over_floor else mid
        bound = f"≤ floor + {target:g} s" if over_floor else f"≤ {target:g} s"
        self.add(f"median ({len(values)} repetitions) [s]", mid, "median_s")
        self.add("p90 [s]", p90(values), "p90_s")
        self.add(f"floor median ({len(floor)} repetitions) [s]", low, "floor_median_s")
        self.add("difference median - floor [s]", mid - low, "difference_s")
        self.add("ratio median / floor", f"{mid / low:.2f}", "ratio")
        self.figures["ratio"] = mid / low
        self.add("target", bound, "target")
        self.add("target met", "yes" if checked <= target else "NO", "met")
        self.figures["met"] = checked <= target

    def add_spread(self, label: str, values: Sequence[float], key: str | None = None) -> None:
        """One row `p50 / p90 / p99 / max` in milliseconds, with the count; the figures (in
        seconds) go to `<key>_p50_s` … `<key>_max_s` and `<key>_n`."""
        stats = spread(values)
        text = " / ".join(f"{stats[k] * 1000:.1f}" for k in ("p50", "p90", "p99", "max"))
        self.add(f"{label}: p50 / p90 / p99 / max [ms]", f"{text}  (n = {len(values)})")
        if key is not None:
            for name, value in stats.items():
                self.figures[f"{key}_{name}" if name == "n" else f"{key}_{name}_s"] = value

    def show(self) -> None:
        width = max(len(label) for label, _ in self.rows)
        print(f"\n== {self.name} ==")
        for label, text in self.rows:
            print(f"  {label:<{width}}  {text}")
        for key in ("samples", "floor_samples"):
            if key in self.figures:
                print(f"  {key} [s]: " + " ".join(f"{v:.3f}" for v in self.figures[key]))

    def write(self, path: Path | None) -> None:
        if path is not None:
            payload = {"name": self.name, "machine": machine(), "figures": self.figures}
            path.write_text(json.dumps(payload, indent=2))


def json_out(argv: Sequence[str]) -> Path | None:
    """`--json-out FILE` (used by run_all.py) or None."""
    if "--json-out" in argv:
        return Path(argv[list(argv).index("--json-out") + 1])
    return None


def int_arg(argv: Sequence[str], name: str, default: int) -> int:
    if name in argv:
        return int(argv[list(argv).index(name) + 1])
    return default


# a real server and the real CLI ----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env() -> dict[str, str]:
    """This process's environment without dockyard's variables and without a virtualenv.

    Bytecode is written as on a user's machine (a shell may set PYTHONDONTWRITEBYTECODE,
    which makes every CLI start compile its imports again), into `PYCACHE` so that nothing
    is written next to the sources; the first, untimed runs warm it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


@dataclass
class Server:
    data_dir: Path
    log: Path
    port: int = field(default_factory=free_port)
    token: str = ADMIN_TOKEN
    proc: subprocess.Popen[bytes] | None = None
    # how the server is started: `python -m dockyard server` unless a benchmark needs a
    # variant (bench/_server_no_runner.py)
    command: tuple[str, ...] = ("-m", "dockyard", "server")
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. DOCKYARD_EXECUTOR

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "Server":
        env = {**base_env(), "DOCKYARD_ADMIN_TOKEN": self.token, **self.extra_env}
        argv = [PYTHON, *self.command, "--data-dir", str(self.data_dir)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*argv, "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        response = httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()


@contextmanager
def running_server(
    tmp: Path, command: tuple[str, ...] | None = None, env: dict[str, str] | None = None
) -> Iterator[Server]:
    server = Server(data_dir=tmp / "data", log=tmp / "server.log", extra_env=dict(env or {}))
    if command is not None:
        server.command = command
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Cli:
    """`python -m dockyard …` with its own config and cache folders, like a fresh user."""

    server: Server
    home: Path
    workspace: str

    def env(self) -> dict[str, str]:
        env = base_env()
        env.update(
            {
                "XDG_CACHE_HOME": str(self.home / "cache"),
                "XDG_CONFIG_HOME": str(self.home / "config"),
                "DOCKYARD_SERVER": self.server.url,
                "DOCKYARD_TOKEN": self.server.token,
                "DOCKYARD_WORKSPACE": self.workspace,
            }
        )
        return env

    def make_workspace(self) -> None:
        """A deploy needs its workspace to exist (`dockyard workspace create`); one that does
        is fine."""
        made = httpx.post(
            f"{self.server.url}/api/v1/workspaces",
            json={"name": self.workspace},
            headers={"Authorization": f"Bearer {self.server.token}"},
            timeout=30,
        )
        if made.status_code not in (201, 409):
            raise RuntimeError(f"cannot create workspace {self.workspace}: {made.text}")

    def argv(self, *args: str) -> list[str]:
        return [PYTHON, "-m", "dockyard", *args]

    def run(
        self, *args: str, cwd: Path | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        if args[:1] in (("deploy",), ("launch",), ("serve",)):
            self.make_workspace()
        proc = subprocess.run(
            self.argv(*args),
            cwd=cwd,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"dockyard {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def json(self, *args: str, cwd: Path | None = None) -> Any:
        return json.loads(self.run(*args, "-o", "json", cwd=cwd).stdout)


def write_files(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def jobs_module(count: int, decorator: Callable[[int], str]) -> str:
    """A `__deployment__.py` with `count` no-op `@run.job` functions `job_0000` …, listed in
    `__all__`; `decorator(i)` gives the decorator line's arguments, e.g. `expose=…`."""
    body = [f'"""{count} no-op jobs."""', "", "from dlt.hub import run", ""]
    for i in range(count):
        body += ["", f"@run.job({decorator(i)})", f"def job_{i:04d}() -> None:", "    pass", ""]
    names = ", ".join(f'"job_{i:04d}"' for i in range(count))
    return "\n".join([*body, "", f"__all__ = [{names}]", ""])


def pyproject(name: str) -> str:
    return (
        "[project]\n"
        f'name = "{name}"\n'
        'version = "0.1.0"\n'
        'requires-python = ">=3.11"\n'
        'dependencies = ["dlt==1.31.0"]\n'
    )


def job_python(spec: dict[str, Any]) -> str:
    """The job's interpreter in a run's `spec.json` argv (which starts with bwrap and setpriv
    when the run is sandboxed): floors run it bare, so the sandbox counts as overhead."""
    return next(str(a) for a in spec["argv"] if str(a).endswith("/bin/python"))
