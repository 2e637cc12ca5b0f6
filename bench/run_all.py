"""Run every benchmark, one after the other, each in its own process, and print a summary.

`make bench` calls this. Each benchmark prints its own figures as it goes; the summary at
the end repeats the headline of each (median, p90, p99 and max where there are enough
samples, floor, difference, ratio, target) with the machine they ran on, ready for
docs/benchmarks.md. The scheduler benchmarks wait for real time (ticks, idle minutes): the
whole run takes about half an hour.

Usage: python bench/run_all.py [script.py …]   (default: every script in SCRIPTS)
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import PYTHON, print_machine

BENCH = Path(__file__).resolve().parent
SCRIPTS = (
    "run_start.py",
    "reconcile.py",
    "deploy_dry_run.py",
    "schedule_lag.py",
    "tick_start.py",
    "follow_up_lag.py",
    "warm_start.py",
    "enqueue.py",
    "scheduler_idle.py",
    "docker_start.py",
    "pages.py",
    "proxy.py",
    "bodies.py",
    "push_history.py",
    "push_body_memory.py",
    "loglines.py",
    "github_sweep.py",
    "github_webhooks.py",
)
COLUMNS = (
    "median_s",
    "p90_s",
    "p99_s",
    "max_s",
    "floor_median_s",
    "difference_s",
    "ratio",
    "target",
    "met",
    "headline",
)


def run(script: str, out: Path) -> dict[str, Any]:
    print(f"\n### {script}", flush=True)
    subprocess.run([PYTHON, str(BENCH / script), "--json-out", str(out)], check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def summary(results: list[dict[str, Any]]) -> None:
    print("\n== summary (seconds; medians over repetitions, floors measured in the same run) ==")
    print_machine()
    print("| benchmark | " + " | ".join(COLUMNS) + " | floor |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for result in results:
        figures = result["figures"]
        cells = [cell(figures.get(column)) for column in COLUMNS]
        print(f"| {result['name']} | " + " | ".join(cells) + f" | {figures.get('floor')} |")


def main(argv: list[str]) -> int:
    results = []
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp:
        for script in argv or SCRIPTS:
            results.append(run(script, Path(tmp) / f"{script}.json"))
    summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
