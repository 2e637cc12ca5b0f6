"""The Docker executor: run start overhead, death detection, 20 concurrent runs.

A real server with `--executor docker` (base image `dockyard-base:py311`, built offline by
scripts/build-base-image.sh) and the real CLI.

- Start overhead: created_at -> the first line of user code of a no-op job in its container,
  against the floor `docker run --rm <the job's image> python -c "import dlt"` (timed from
  just before `docker run` to the container's own clock after the import), interleaved.
  Target: ≤ floor + 0.5 s.
- Death detection: a running job's container is killed with `docker kill`; the lag is the
  run's `finished_at` minus the moment `docker kill` returned.
- Warm start: created_at -> user code when the run takes the warm pool's held container
  (a second server on the same image with the pool on; before each launch the bench waits
  until the job's container is held and its imports are done). Target: median ≤ 100 ms.
  The cold figures above come from a server with the pool off.
- 20 concurrent short runs on 2 cores: a job printing 200 numbered lines (concurrency
  unlimited) is triggered 20 times at once; every run's log must hold its 200 lines, in
  order, once.

Usage: python bench/docker_start.py [-n 5] [--json-out FILE]
"""

import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from _common import (
    Cli,
    Report,
    Server,
    int_arg,
    json_out,
    print_machine,
    pyproject,
    running_server,
    tree_cpu_s,
    write_files,
)

BASE = "dockyard-base:py311"
CA = "/etc/ssl/certs/ca-certificates.crt"
MARK = "USER_CODE_START"
LINES = 200
DEPLOYMENT = f'''"""Docker benchmark jobs."""

import time

from dlt.hub import run


@run.job
def noop() -> None:
    print(f"{MARK} {{time.time():.6f}}", flush=True)


@run.job(execute={{"concurrency": None}})
def chatty() -> None:
    for i in range({LINES}):
        print(f"chatty {{i}}", flush=True)


@run.job
def napper() -> None:
    for i in range(6000):
        print(f"nap {{i}}", flush=True)
        time.sleep(0.1)


__all__ = ["chatty", "napper", "noop"]
'''


def ts(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def user_start(cli: Cli, run: dict[str, Any]) -> float:
    lines = cli.json("job-run", "noop", str(run["number"]), "logs", "--all")["lines"]
    return next(float(ln["m"].split()[1]) for ln in lines if ln["m"].startswith(MARK))


def floor(image: str) -> float:
    started = time.time()
    out = subprocess.run(
        ["docker", "run", "--rm", image, "python", "-c", "import dlt, time; print(time.time())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.split()[-1]) - started


def image_of(env_key: str) -> str:
    out = subprocess.run(
        [
            "docker",
            "images",
            "--filter",
            f"label=dockyard.env={env_key}",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0]


def wait_all(cli: Cli, job: str, count: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = cli.json("job-run", "list", job)
        if len(runs) >= count and all(r["status"] in ("completed", "failed") for r in runs):
            return list(runs)
        time.sleep(0.5)
    raise RuntimeError(f"{count} runs of {job} did not end in {timeout:.0f}s")


def death_lag(cli: Cli) -> float:
    started = cli.json("launch", "napper")
    while cli.json("job-run", "napper", str(started["number"]), "info")["status"] != "running":
        time.sleep(0.2)
    time.sleep(1.0)
    name = f"dockyard-run-{started['run_id']}"
    subprocess.run(["docker", "kill", name], check=True, capture_output=True)
    killed = time.time()
    while (run := cli.json("job-run", "napper", str(started["number"]), "info"))[
        "finished_at"
    ] is None:
        time.sleep(0.1)
    return ts(run["finished_at"]) - killed


def held_container(server: Server, timeout: float = 60) -> str:
    """The run id of the pool's held container, once it has done its imports (its
    processes' CPU stands still)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        markers = list((server.data_dir / "runs" / ".prewarm").glob("*/*"))
        if markers:
            run_id = markers[0].name
            pid = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Pid}}", f"dockyard-run-{run_id}"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            if pid.isdigit() and int(pid) > 0:
                before = tree_cpu_s([int(pid)])
                time.sleep(0.3)
                if tree_cpu_s([int(pid)]) - before < 0.01:
                    return run_id
                continue
        time.sleep(0.2)
    raise RuntimeError("no held container settled")


def warm_starts(tmp: Path, env: dict[str, str], ws: Path, repeat: int) -> list[float]:
    """created -> user code of runs that take the held container (pool on)."""
    warm_env = {**env, "DOCKYARD_WARM_POOL_MB": "145"}
    starts = []
    (tmp / "warm").mkdir()
    with running_server(tmp / "warm", env=warm_env) as server:
        cli = Cli(server, tmp / "home-warm", "bench-docker")
        cli.run("deploy", cwd=ws)
        cli.json("launch", "noop", "-f")  # cold; the job is warmed after it
        for _ in range(repeat):
            held = held_container(server)
            run = cli.json("launch", "noop", "-f")
            if run["run_id"] != held:
                raise RuntimeError(f"run {run['run_id']} did not take held container {held}")
            starts.append(user_start(cli, run) - ts(run["created_at"]))
    return starts


def bench(repeat: int) -> Report:
    env = {
        "DOCKYARD_EXECUTOR": "docker",
        "DOCKYARD_DOCKER_BASE_IMAGE": BASE,
        "DOCKYARD_DOCKER_CA_BUNDLE": CA,
    }
    cold_env = {**env, "DOCKYARD_WARM_POOL_MB": "0"}  # every run creates its container
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp_name:
        tmp = Path(tmp_name)
        ws = write_files(
            tmp / "ws",
            {
                ".dlt/.workspace": "",
                "pyproject.toml": pyproject("d"),
                "__deployment__.py": DEPLOYMENT,
            },
        )
        with running_server(tmp, env=cold_env) as server:
            cli = Cli(server, tmp / "home", "bench-docker")
            cli.run("deploy", cwd=ws)
            first = cli.json("launch", "noop", "-f")  # builds the image (untimed)
            image = image_of(first["environment"])
            floor(image)
            overheads, floors = [], []
            for _ in range(repeat):
                floors.append(floor(image))
                run = cli.json("launch", "noop", "-f")
                overheads.append(user_start(cli, run) - ts(run["created_at"]))
            deaths = [death_lag(cli) for _ in range(3)]
            began = time.time()
            for _ in range(20):
                cli.run("trigger", "chatty")
            runs = wait_all(cli, "chatty", 20, timeout=600)
            took = time.time() - began
            lost = 0
            for run in runs:
                log = cli.json("job-run", "chatty", str(run["number"]), "logs", "--all")
                lines = [ln["m"] for ln in log["lines"] if ln["s"] == "out"]
                lost += LINES - len([m for m in lines if m.startswith("chatty ")])
                if lines != [f"chatty {i}" for i in range(LINES)]:
                    lost += 0 if len(lines) == LINES else 1
        warm = warm_starts(tmp, env, ws, repeat)
    rep = Report("docker executor: created -> user code in a container, no-op job")
    rep.figures["floor"] = "docker run --rm <the job's image> python -c 'import dlt'"
    rep.headline(overheads, floors, 0.5, over_floor=True)
    rep.add_spread("warm: created -> user code in the held container", warm, "warm")
    rep.add("  warm median against the cold median (ratio)", median(warm) / median(overheads))
    rep.add("  warm target: median <= 100 ms", "met" if median(warm) <= 0.1 else "NOT met")
    rep.add_spread("death detection: docker kill -> finished_at", deaths, "death")
    rep.add("20 concurrent runs of 200 lines: all ended after [s]", took, "concurrent_s")
    rep.add(
        "  completed / failed",
        f"{sum(r['status'] == 'completed' for r in runs)} / "
        f"{sum(r['status'] == 'failed' for r in runs)}",
    )
    rep.add("  log lines lost or out of order", lost, "lost_lines")
    return rep


def main(argv: list[str]) -> int:
    repeat = int_arg(argv, "-n", 5)
    print_machine()
    rep = bench(repeat)
    rep.show()
    rep.write(json_out(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
