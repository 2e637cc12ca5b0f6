"""Run start overhead: from a run's `created_at` to the first line of user code, for a no-op
job, against the floor `python -c "import dlt"` in the same interpreter as the job's
environment (`<data dir>/envs/<hash>/bin/python`), measured in the same run.

A real server process and the real CLI: the workspace is deployed, launched once to build
its environment, then launched N times one after the other, each followed to its end
(`launch noop -f -o json`). Per run:

- overhead            user code's `time.time()` minus the run's `created_at` (server clock)
- claim + prepare     `created_at` → the runner's "starting …" log line (wake, claim, env
                      check, code checkout, settings, entry point)
- supervisor start    "starting …" → the supervisor has spawned the job (`proc.json`)
- job process         the job process's start → user code (Python, shim, dlt, launcher)

The floors run interleaved with the launches, with the job's own argv[0], environment (its
bytecode cache included) and folder, timed like the job: from just before the process is
started to its own `time.time()` after the import, so interpreter exit is not counted.
Besides `import dlt`: `pass` (a bare interpreter) and `import dlt.hub.run` + dlt's job
launcher (what the job process imports before user code).

Usage: python bench/run_start.py [-n 10] [--json-out FILE]
"""

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
    parse_time,
    print_machine,
    pyproject,
    running_server,
    timed,
    write_files,
)

TARGET_OVER_FLOOR_S = 0.3
MARK = "USER_CODE_START"
DEPLOYMENT = f'''"""A no-op job: prints when user code starts."""

import time

from dlt.hub import run


@run.job
def noop() -> None:
    print(f"{MARK} {{time.time():.6f}}", flush=True)


__all__ = ["noop"]
'''
FLOORS = {
    "import_dlt": "import dlt",
    "import_launcher": "import dlt.hub.run, dlt._workspace.deployment.launchers.job",
    "bare_python": "pass",
}
STAMP = "; import time; print(f'{time.time():.6f}')"


def workspace(root: Path) -> Path:
    return write_files(
        root,
        {
            ".dlt/.workspace": "",
            "pyproject.toml": pyproject("noop"),
            "__deployment__.py": DEPLOYMENT,
        },
    )


def log_lines(data_dir: Path, run_id: str) -> list[dict[str, Any]]:
    text = (data_dir / "runs" / run_id / "log.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def measure(run: dict[str, Any], data_dir: Path) -> dict[str, float]:
    """Timestamps of one finished run as durations (seconds)."""
    if run["status"] != "completed":
        raise RuntimeError(f"run did not complete: {run}")
    lines = log_lines(data_dir, run["run_id"])
    user = next(float(ln["m"].split()[1]) for ln in lines if ln["m"].startswith(MARK))
    starting = next(parse_time(ln["t"]) for ln in lines if ln["m"].startswith("starting "))
    proc = json.loads((data_dir / "runs" / run["run_id"] / "proc.json").read_text())
    exited = json.loads((data_dir / "runs" / run["run_id"] / "exit.json").read_text())
    spawned = parse_time(proc["started_at"])
    created = parse_time(run["created_at"])
    return {
        "finish_seen": parse_time(run["finished_at"]) - parse_time(exited["finished_at"]),
        "overhead": user - created,
        "claim_prepare": starting - created,
        "created_to_started_at": parse_time(run["started_at"]) - created,
        "supervisor": spawned - starting,
        "interpreter_imports": user - spawned,
    }


def job_spec(data_dir: Path, run_id: str) -> dict[str, Any]:
    """argv, cwd and environment the supervisor started the job with."""
    spec: dict[str, Any] = json.loads((data_dir / "runs" / run_id / "spec.json").read_text())
    return spec


def floor_sample(spec: dict[str, Any]) -> dict[str, float]:
    """Each floor command once, with the job's own interpreter, environment (bytecode cache
    included) and folder, timed like the job: from just before the process is started to the
    moment its code has run (its own `time.time()`), so interpreter exit is not counted."""
    python, env, cwd = job_python(spec), spec["env"], Path(spec["cwd"])
    sample: dict[str, float] = {}
    for name, code in FLOORS.items():
        started = time.time()
        proc = subprocess.run(
            [python, "-c", code + STAMP], env=env, cwd=cwd, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"floor {code!r} failed: {proc.stderr}")
        sample[name] = float(proc.stdout.split()[-1]) - started
        sample[f"{name}_wall"] = time.time() - started
    return sample


def bench(repeat: int) -> Report:
    """Two servers, the same job: one runs it in its sandbox (the default), the other with
    `DOCKYARD_SANDBOX=off`; launches and floors interleaved so drift hits all alike."""
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp_name:
        tmp = Path(tmp_name)
        ws = workspace(tmp / "noop")
        (tmp / "plain").mkdir()
        with (
            running_server(tmp) as server,
            running_server(tmp / "plain", env={"DOCKYARD_SANDBOX": "off"}) as plain,
        ):
            cli = Cli(server, tmp / "home", "bench-noop")
            plain_cli = Cli(plain, tmp / "home-plain", "bench-noop")
            setup = {"deploy": timed(lambda: cli.run("deploy", cwd=ws))[0]}
            setup["warm"], first = timed(lambda: cli.json("launch", "noop", "-f"))
            plain_cli.run("deploy", cwd=ws)
            plain_cli.json("launch", "noop", "-f")
            cold = measure(first, server.data_dir)
            setup.update({f"first_{key}": value for key, value in cold.items()})
            spec = job_spec(server.data_dir, first["run_id"])
            floor_sample(spec)  # warm-up
            samples: list[dict[str, float]] = []
            unsandboxed: list[dict[str, float]] = []
            floors: list[dict[str, float]] = []
            walls: list[float] = []
            for _ in range(repeat):  # interleaved, so drift on a shared machine hits all
                floors.append(floor_sample(spec))
                wall, run = timed(lambda: cli.json("launch", "noop", "-f"))
                walls.append(wall)
                samples.append(measure(run, server.data_dir))
                bare = plain_cli.json("launch", "noop", "-f")
                unsandboxed.append(measure(bare, plain.data_dir))
    rep = report(samples, floors, walls, setup, Path(job_python(spec)))
    sandboxed = median([s["overhead"] for s in samples])
    without = median([s["overhead"] for s in unsandboxed])
    rep.add("the same launches, DOCKYARD_SANDBOX=off, median [s]", without, "unsandboxed_s")
    rep.add("  the sandbox's share (median - unsandboxed median) [s]", sandboxed - without)
    rep.add(
        "  supervisor step without the sandbox, median [s]",
        median([s["supervisor"] for s in unsandboxed]),
        "unsandboxed_supervisor_s",
    )
    return rep


def report(
    samples: list[dict[str, float]],
    floors: list[dict[str, float]],
    walls: list[float],
    setup: dict[str, float],
    python: Path,
) -> Report:
    def col(key: str) -> list[float]:
        return [s[key] for s in samples]

    floor = {key: [f[key] for f in floors] for key in floors[0]}

    rep = Report("run start overhead: created_at -> user code, no-op job")
    rep.figures["floor"] = "python -c 'import dlt' (job's interpreter and environment)"
    rep.add("job interpreter", f"<data dir>/{python.relative_to(python.parents[3])}")
    rep.add("first deploy, builds the CLI's env [s]", setup["deploy"], "first_deploy_s")
    rep.add("first launch, builds the run env [s]", setup["warm"], "first_launch_s")
    rep.add("  its created -> user code [s]", setup["first_overhead"], "first_overhead_s")
    rep.add("    created -> 'starting' (env build) [s]", setup["first_claim_prepare"])
    rep.add("    job process, cold bytecode cache [s]", setup["first_interpreter_imports"])
    rep.headline(col("overhead"), floor["import_dlt"], TARGET_OVER_FLOOR_S, over_floor=True)
    for label, key in (
        ("claim + prepare: created -> 'starting' line", "claim_prepare"),
        ("created -> started_at (DB)", "created_to_started_at"),
        ("supervisor: 'starting' -> job spawned", "supervisor"),
        ("job process: spawned -> user code", "interpreter_imports"),
    ):
        rep.add(f"  {label}, median [s]", median(col(key)), f"{key}_s")
    rep.add("  floor: python -c pass [s]", median(floor["bare_python"]), "bare_python_s")
    rep.add("  floor incl. interpreter exit [s]", median(floor["import_dlt_wall"]), "floor_wall_s")
    rep.add(
        "  floor: import dlt.hub.run + launcher [s]", median(floor["import_launcher"]), "launcher_s"
    )
    rep.add("CLI launch -f -o json wall time, median [s]", median(walls), "launch_wall_s")
    rep.add("  job exit -> finished_at in the DB, median [s]", median(col("finish_seen")), "fin_s")
    return rep


def main(argv: list[str]) -> int:
    repeat = int_arg(argv, "-n", 10)
    print_machine()
    rep = bench(repeat)
    rep.show()
    rep.write(json_out(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
