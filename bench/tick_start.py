"""Scheduled tick -> user code running, local executor, no-op job (target: median ≤ 100 ms).

A real server and the real CLI: a workspace with one job on `schedule:* * * * *` that prints
`time.time()` as its first line is deployed, and N minute ticks are waited for. Each run's
lag is that timestamp minus the run's `scheduled_for` (the cron tick). Timed runs are
prepared ahead of their tick (the process started, dlt imported, waiting) and released at
it; a tick whose process could not be prepared (the environment was still being built right
after the deploy) starts the ordinary way and is reported separately.

For comparison in the same run (not a floor the target is relative to): the ordinary start
overhead, created_at -> user code, of the same job launched by hand, and `python -c "import
dlt"` in the job's environment.

Usage: python bench/tick_start.py [-n 3] [--json-out FILE]
"""

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    Cli,
    Report,
    int_arg,
    job_python,
    json_out,
    median,
    print_machine,
    pyproject,
    running_server,
    write_files,
)

TARGET_S = 0.1
MARK = "USER_CODE_START"
DEPLOYMENT = f'''"""A minutely no-op job: prints when user code starts."""

import time

from dlt.hub import run


@run.job(trigger="* * * * *")
def tick() -> None:
    print(f"{MARK} {{time.time():.6f}}", flush=True)


__all__ = ["tick"]
'''


def lines(data_dir: Path, run_id: str) -> list[dict[str, Any]]:
    text = (data_dir / "runs" / run_id / "log.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def user_start(data_dir: Path, run_id: str) -> float:
    return next(
        float(ln["m"].split()[1]) for ln in lines(data_dir, run_id) if ln["m"].startswith(MARK)
    )


def prepared(data_dir: Path, run_id: str) -> bool:
    return any("released the prepared process" in ln["m"] for ln in lines(data_dir, run_id))


def wait_runs(cli: Cli, count: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in cli.json("job-run", "list", "tick") if r["trigger"].startswith("sched")]
        done = [r for r in runs if r["status"] in ("completed", "failed", "skipped")]
        if len(done) >= count:
            return sorted(done, key=lambda r: r["number"])[:count]
        time.sleep(1)
    raise RuntimeError(f"fewer than {count} scheduled runs ended in {timeout:.0f}s")


def import_dlt_s(spec: dict[str, Any]) -> float:
    started = time.time()
    proc = subprocess.run(
        [job_python(spec), "-c", "import dlt, time; print(time.time())"],
        env=spec["env"],
        cwd=spec["cwd"],
        capture_output=True,
        text=True,
    )
    return float(proc.stdout.split()[-1]) - started


def bench(ticks: int) -> Report:
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp_name:
        tmp = Path(tmp_name)
        ws = write_files(
            tmp / "tick",
            {
                ".dlt/.workspace": "",
                "pyproject.toml": pyproject("t"),
                "__deployment__.py": DEPLOYMENT,
            },
        )
        with running_server(tmp) as server:
            cli = Cli(server, tmp / "home", "bench-tick")
            cli.run("deploy", cwd=ws)
            runs = wait_runs(cli, ticks, timeout=70.0 * (ticks + 1))
            lags = {
                r["number"]: user_start(server.data_dir, r["run_id"])
                - dt.datetime.fromisoformat(r["scheduled_for"]).timestamp()
                for r in runs
            }
            warm = [lags[r["number"]] for r in runs if prepared(server.data_dir, r["run_id"])]
            cold = [lags[r["number"]] for r in runs if not prepared(server.data_dir, r["run_id"])]
            manual = cli.json("launch", "tick", "-f")
            ordinary = (
                user_start(server.data_dir, manual["run_id"])
                - dt.datetime.fromisoformat(manual["created_at"]).timestamp()
            )
            spec = json.loads(
                (server.data_dir / "runs" / manual["run_id"] / "spec.json").read_text()
            )
            floor = import_dlt_s(spec)
    if not warm:
        raise RuntimeError("no tick was prepared ahead: nothing to report")
    rep = Report("scheduled tick -> user code, no-op job (prepared runs)")
    rep.figures["floor"] = (
        "ordinary start of the same job (created_at -> user code), for comparison"
    )
    rep.headline(warm, [ordinary], TARGET_S, over_floor=False)
    rep.add("max [s]", max(warm), "max_s")
    rep.add("ticks measured (prepared / started the ordinary way)", f"{len(warm)} / {len(cold)}")
    if cold:
        rep.add(
            "ticks started the ordinary way: tick -> user code [s]",
            ", ".join(f"{v:.3f}" for v in cold),
        )
    rep.add("python -c 'import dlt' in the job's environment [s]", floor, "import_dlt_s")
    rep.add("median of all ticks [s]", median(list(lags.values())))
    return rep


def main(argv: list[str]) -> int:
    ticks = int_arg(argv, "-n", 3)
    print_machine()
    rep = bench(ticks)
    rep.show()
    rep.write(json_out(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
