"""Warm starts for every run (issue 16, item 3): created → user code for a launched and an
API-triggered run, and parent exit → follow-up user code, with the warm pool on (its default
size) and off (`DOCKYARD_WARM_POOL_MB=0`, the cold figure), against the floor
`python -c "import dlt"` in the job's own environment; then what the pool costs idle.

Two real servers (local executor, SQLite, the default sandbox), the same workspace: a no-op
job `a` and a no-op `c`, each printing `time.time()` as its first line, and `b`, a follow-up
of `a` (`trigger=a.success`) that does the same. Each is launched once untimed (the run
environment is built, the pool fills). Then N rounds, interleaved on both servers so drift
hits both alike: `dockyard launch c`, an API trigger of `c`, and `dockyard launch a` followed
to the end of `b`. Between two runs the bench waits until the pool's held processes are idle
(imports done), as a run that comes some seconds after the previous one finds them.

- created → user code   user code's `time.time()` minus the run's `created_at` (server clock)
- exit → follow-up code  `b`'s user code minus `a`'s process exit (its `exit.json`)
- idle                  RSS and PSS (MB) and CPU (% of a core, over a window) of each
                        server's process tree plus its held processes, pool filled vs off

Targets (not asserted): warm launch/trigger median ≤ 50 ms; warm follow-up p99 ≤ 100 ms;
idle with the pool filled within 2x of the control plane's idle figures (145 MB, 0.7 %).

Usage: python bench/warm_start.py [-n 20] [--idle-s 30] [--json-out FILE]
"""

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    Cli,
    Report,
    Server,
    int_arg,
    json_out,
    median,
    parse_time,
    percentile,
    print_machine,
    process_cpu_s,
    pyproject,
    running_server,
    write_files,
)
from run_start import floor_sample, job_spec

MARK = "USER_CODE_START"
WORKSPACE = "bench-warm"
LAUNCH_TARGET_S = 0.05
FOLLOW_TARGET_S = 0.1
IDLE_MB, IDLE_CPU_PCT = 145.0, 0.7  # the control plane idle today (docs/benchmarks.md)
TERMINAL = ("completed", "failed", "cancelled", "skipped")
DEPLOYMENT = f'''"""No-op jobs that print when user code starts: a, its follow-up b, and c."""

import time

from dlt.hub import run


@run.job
def a() -> None:
    print(f"{MARK} {{time.time():.6f}}", flush=True)


@run.job(trigger=a.success)
def b() -> None:
    print(f"{MARK} {{time.time():.6f}}", flush=True)


@run.job
def c() -> None:
    print(f"{MARK} {{time.time():.6f}}", flush=True)


__all__ = ["a", "b", "c"]
'''


def workspace(root: Path) -> Path:
    files = {".dlt/.workspace": "", "pyproject.toml": pyproject("warm"), "__deployment__.py": ""}
    files["__deployment__.py"] = DEPLOYMENT
    return write_files(root, files)


def user_code(server: Server, run_id: str) -> float:
    text = (server.data_dir / "runs" / run_id / "log.jsonl").read_text()
    for line in text.splitlines():
        message = json.loads(line)["m"] if line.strip() else ""
        if message.startswith(MARK):
            return float(message.split()[1])
    raise RuntimeError(f"run {run_id} printed no {MARK}")


def wait_run(server: Server, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = server.api("GET", f"/api/v1/runs/{run_id}")
        if run["status"] in TERMINAL:
            if run["status"] != "completed":
                raise RuntimeError(f"run did not complete: {run}")
            return run
        time.sleep(0.05)
    raise RuntimeError(f"run {run_id} did not end within {timeout}s")


def wait_follow_up(server: Server, cause: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    path = f"/api/v1/workspaces/{WORKSPACE}/runs"
    while time.monotonic() < deadline:
        for run in server.api("GET", path, params={"job": "b", "limit": 5}):
            if run["cause_run_id"] == cause and run["status"] in TERMINAL:
                return wait_run(server, run["run_id"])
        time.sleep(0.05)
    raise RuntimeError(f"no follow-up of {cause} ended within {timeout}s")


def run_id_of(answer: Any) -> str:
    """The run id in a launch or trigger answer (the first one found)."""
    if isinstance(answer, dict):
        if isinstance(answer.get("run_id"), str):
            return str(answer["run_id"])
        answer = list(answer.values())
    if isinstance(answer, list):
        for item in answer:
            if isinstance(item, dict | list):
                try:
                    return run_id_of(item)
                except LookupError:
                    continue
    raise LookupError("no run id in the answer")


def held_pids(server: Server) -> list[int]:
    """The job processes of the server's held (warm) processes."""
    pids = []
    for marker in (server.data_dir / "runs" / ".prewarm").glob("*/*"):
        proc = server.data_dir / "runs" / marker.name / "proc.json"
        try:
            pids.append(int(json.loads(proc.read_text())["pid"]))
        except (OSError, ValueError, KeyError):
            continue
    return pids


def settle(server: Server, timeout: float = 30) -> None:
    """Until the held processes have done their imports (their CPU stands still); the pool
    refills a second after the last run was made (`warmpool.FILL_DELAY_S`)."""
    time.sleep(1.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = held_pids(server)
        before = _cpu(pids)
        time.sleep(0.3)
        if pids and _cpu(pids) - before < 0.01:
            return
        if not pids and time.monotonic() > deadline - timeout + 3:
            return  # no pool (off): nothing to wait for
    raise RuntimeError("the held processes did not settle")


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu_s(pid)
        except OSError:
            continue
    return total


def launched(cli: Cli, server: Server) -> float:
    run = wait_run(server, run_id_of(cli.json("launch", "c")))
    return user_code(server, run["run_id"]) - parse_time(run["created_at"])


def triggered(server: Server) -> float:
    answer = server.api(
        "POST", f"/api/v1/workspaces/{WORKSPACE}/trigger", json={"selectors": ["c"]}
    )
    run = wait_run(server, run_id_of(answer))
    return user_code(server, run["run_id"]) - parse_time(run["created_at"])


def followed(cli: Cli, server: Server) -> float:
    parent = wait_run(server, run_id_of(cli.json("launch", "a")))
    down = wait_follow_up(server, parent["run_id"])
    exited = json.loads((server.data_dir / "runs" / parent["run_id"] / "exit.json").read_text())
    return user_code(server, down["run_id"]) - parse_time(exited["finished_at"])


def measures(cli: Cli, server: Server) -> dict[str, Callable[[], float]]:
    return {
        "launch": lambda: launched(cli, server),
        "trigger": lambda: triggered(server),
        "follow_up": lambda: followed(cli, server),
    }


def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """RSS and PSS (MB) of these processes, summed (/proc/<pid>/smaps_rollup)."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss / 1024, pss / 1024


def idle(server: Server, window_s: float) -> dict[str, float]:
    """Memory and CPU of the server's tree plus its held processes' trees, idle."""
    assert server.proc is not None
    held = held_pids(server)
    pids = sorted({p for root in [server.proc.pid, *held] for p in tree(root)})
    before = _cpu(pids)
    time.sleep(window_s)
    rss, pss = memory_mb(pids)
    per_held = [memory_mb(tree(pid))[0] for pid in held]
    return {
        "rss_mb": rss,
        "pss_mb": pss,
        "cpu_pct": 100 * (_cpu(pids) - before) / window_s,
        "held": float(len(held)),
        "held_rss_mb": median(per_held) if per_held else 0.0,
    }


def bench(repeat: int, idle_s: float) -> Report:
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-warm-") as tmp_name:
        tmp = Path(tmp_name)
        ws = workspace(tmp / "warm")
        (tmp / "cold").mkdir()
        with (
            running_server(tmp) as warm,
            running_server(tmp / "cold", env={"DOCKYARD_WARM_POOL_MB": "0"}) as cold,
        ):
            clis = {
                "warm": Cli(warm, tmp / "home", WORKSPACE),
                "cold": Cli(cold, tmp / "home-cold", WORKSPACE),
            }
            servers = {"warm": warm, "cold": cold}
            for cli in clis.values():
                cli.run("deploy", cwd=ws)
            first = wait_run(cold, run_id_of(clis["cold"].json("launch", "c")))
            spec = job_spec(cold.data_dir, first["run_id"])
            floor_sample(spec)  # warm-up
            floors = []
            samples: dict[str, dict[str, list[float]]] = {"warm": {}, "cold": {}}
            timed = {case: measures(cli, servers[case]) for case, cli in clis.items()}
            # one kind of run at a time: the pool holds the environments used recently
            # (a launch and a trigger of `c`, then `a` and its follow-up `b`); the first
            # of each block is untimed (the pool switches to that block's jobs)
            for kind in ("launch", "trigger", "follow_up"):
                for i in range(repeat + 1):
                    if kind == "launch" and i:
                        floors.append(floor_sample(spec)["import_dlt"])
                    for case, server in servers.items():
                        settle(server)
                        value = timed[case][kind]()
                        if i:
                            samples[case].setdefault(kind, []).append(value)
            settle(warm)
            idles = {case: idle(server, idle_s) for case, server in servers.items()}
    return report(samples, floors, idles)


def report(
    samples: dict[str, dict[str, list[float]]],
    floors: list[float],
    idles: dict[str, dict[str, float]],
) -> Report:
    def col(case: str, key: str) -> list[float]:
        return samples[case][key]

    floor = median(floors)
    rep = Report("warm starts: created -> user code, warm pool on (default size) vs off")
    rep.figures["floor"] = "python -c 'import dlt' (job's interpreter and environment)"
    rep.add("floor: import dlt, median [s]", floor, "floor_s")
    for key, label in (
        ("launch", "created -> user code, `dockyard launch`"),
        ("trigger", "created -> user code, API trigger"),
        ("follow_up", "parent exit -> follow-up user code"),
    ):
        for case in ("warm", "cold"):
            values = col(case, key)
            mid, p99 = median(values), percentile(values, 99)
            rep.add(f"{label}, {case}: median / p99 [s]", f"{mid:.3f} / {p99:.3f}")
            rep.figures[f"{key}_{case}_median_s"] = mid
            rep.figures[f"{key}_{case}_p99_s"] = p99
        warm_mid, cold_mid = median(col("warm", key)), median(col("cold", key))
        rep.add(
            f"  {key}: warm / cold, warm / floor",
            f"{warm_mid / cold_mid:.2f}, {warm_mid / floor:.2f}",
        )
    launch = median(col("warm", "launch") + col("warm", "trigger"))
    follow = percentile(col("warm", "follow_up"), 99)
    rep.add("target: warm launch/trigger median ≤ 50 ms", _met(launch <= LAUNCH_TARGET_S))
    rep.add("target: warm follow-up p99 ≤ 100 ms", _met(follow <= FOLLOW_TARGET_S))
    # run_all.py's summary row: the launch/trigger median and the follow-up p99, warm
    rep.figures.update(median_s=launch, p99_s=follow, floor_median_s=floor)
    rep.figures["ratio"] = launch / floor
    rep.figures["met"] = launch <= LAUNCH_TARGET_S and follow <= FOLLOW_TARGET_S
    for case in ("warm", "cold"):
        got = idles[case]
        rep.add(
            f"idle, pool {'filled' if case == 'warm' else 'off'}: RSS / PSS [MB], CPU [% core]",
            f"{got['rss_mb']:.0f} / {got['pss_mb']:.0f}, {got['cpu_pct']:.2f}"
            f" ({got['held']:.0f} held, {got['held_rss_mb']:.0f} MB RSS each)",
        )
        rep.figures.update({f"idle_{case}_{k}": v for k, v in got.items()})
    filled = idles["warm"]
    rep.add(
        "target: idle within 2x of 145 MB / 0.7 % (PSS, CPU)",
        _met(filled["pss_mb"] <= 2 * IDLE_MB and filled["cpu_pct"] <= 2 * IDLE_CPU_PCT),
    )
    return rep


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def main(argv: list[str]) -> int:
    repeat = int_arg(argv, "-n", 20)
    idle_s = float(argv[argv.index("--idle-s") + 1]) if "--idle-s" in argv else 30.0
    print_machine()
    rep = bench(repeat, idle_s)
    rep.show()
    rep.write(json_out(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
