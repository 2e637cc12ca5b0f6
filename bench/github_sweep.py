"""A missed webhook, healed by the sweeper: time from a push nobody told the server about to
the new version deployed and reconciled, against manifest generation measured in the same run.

A real server process with the default sweep interval (`DOCKYARD_GITHUB_SWEEP_S` unset: 60 s
±20 %), a workspace linked with the real CLI to a repository on a loopback git host (real
bare repositories served by `git http-backend`: `tests/githost.py`), and **no** webhook
delivery ever sent. The first head is deployed by the sweeper (untimed: it builds the
environment the later commits reuse). Then, N times: a commit that changes the manifest (one
more job) is pushed, and the script waits for the link's `last_processed_head` to be that
commit. The times come from the server's own records: the sweep delivery's `received_at`
(when the sweeper saw the head) and the link's `last_processed_at` (set once the deploy is
committed and reconciled).

Each push follows the previous trial's end at once, so the next pass is about one jittered
interval minus the processing time away: close to the worst phase, not a random one.

Floor: manifest generation as the server does it, without the sandbox — the shim
(`dockyard/shim/dlt_shim.py inspect`) in the environment the server built for the workspace
(`<data>/source-envs/…`), on the same files, N times, interleaved with the trials' waits.

Usage: python bench/github_sweep.py [-n 3] [--jobs 10] [--json-out FILE]
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    Cli,
    Report,
    base_env,
    int_arg,
    jobs_module,
    json_out,
    median,
    parse_time,
    print_machine,
    pyproject,
    running_server,
    time_command,
    write_files,
)

sys.path.insert(0, str(REPO))
from tests.githost import GitHost, git  # the repository root is on the path now

NAME = "acme/pipelines"
TOKEN = "ghp_bench_sweep_token_0123456789"
WS = "sweep-bench"
TARGET_S = 90.0  # the issue: "a missed webhook is caught by the sweeper within 90 s"
SHIM = REPO / "dockyard" / "shim" / "dlt_shim.py"


def workspace(root: Path, jobs: int) -> Path:
    return write_files(
        root,
        {
            ".dlt/.workspace": "",
            "pyproject.toml": pyproject("sweep_bench"),
            "__deployment__.py": jobs_module(jobs, lambda i: ""),
        },
    )


def push(host: GitHost, clone: Path, message: str) -> str:
    return host.commit_and_push(NAME, clone, message)


def link(cli: Cli, api_url: str) -> None:
    cli.run("workspace", "create", WS)
    env = {**cli.env(), "GH_TOKEN": TOKEN}
    argv = cli.argv("workspace", "link-github", WS, "--repo", NAME, "--token-env", "GH_TOKEN",
                    "--api-url", api_url)  # fmt: skip
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)


def wait_processed(cli: Cli, sha: str, timeout: float) -> dict[str, Any]:
    """The link as the API shows it once `sha` is its last processed head."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info: dict[str, Any] = cli.server.api("GET", f"/api/v1/workspaces/{WS}")["github"]
        last = info["last_delivery"] or {}
        if last.get("head_sha") == sha and last.get("status") == "failed":
            raise RuntimeError(f"the sweep of {sha[:12]} failed: {last.get('outcome')}")
        if info["last_processed_head"] == sha:
            return info
        time.sleep(0.2)
    raise RuntimeError(f"{sha[:12]} was not processed within {timeout:.0f} s")


def floor_once(data: Path, ws: Path) -> float:
    """The shim's manifest generation in the server's environment for this workspace."""
    [ready] = sorted((data / "source-envs").glob("*/.ready"))
    python = ready.parent / "bin" / "python"
    [shimlib] = sorted((data / "shimlib").glob("pathspec-*"))
    from uv import find_uv_bin

    env = {**base_env(), "DOCKYARD_SHIM_PATHS": str(shimlib)}
    env["PATH"] = f"{Path(find_uv_bin()).parent}:{env.get('PATH', '')}"
    with tempfile.TemporaryDirectory(prefix="dockyard-stage-") as stage:
        argv = [str(python), str(SHIM), "inspect", str(ws), stage, "__deployment__"]
        return time_command(argv, 1, env=env, cwd=ws, warmup=0)[0]


def main(argv: list[str]) -> int:
    trials, jobs = int_arg(argv, "-n", 3), int_arg(argv, "--jobs", 10)
    print_machine()
    report = Report("github_sweep: missed push → deployment reconciled, by the sweeper")
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-sweep-") as tmp_name:
        tmp = Path(tmp_name)
        host = GitHost(tmp / "host", token=TOKEN).start()
        host.create(NAME)
        clone = workspace(tmp / "clone", jobs)
        git("init", "-q", "-b", "main", cwd=clone)
        first = push(host, clone, "first")
        try:
            with running_server(tmp) as server:
                cli = Cli(server, tmp / "home", WS)
                link(cli, host.api_url())
                started = time.monotonic()
                wait_processed(cli, first, 300)
                print(f"first head deployed by the sweeper after {time.monotonic() - started:.1f}"
                      " s (untimed: builds the environment)", flush=True)  # fmt: skip
                totals, detections, processings, floors = [], [], [], []
                for i in range(trials):
                    floors.append(floor_once(server.data_dir, clone))
                    (clone / "__deployment__.py").write_text(
                        jobs_module(jobs + 1 + i, lambda _: "")
                    )
                    sha = push(host, clone, f"one more job ({i + 1})")
                    pushed = time.time()
                    info = wait_processed(cli, sha, TARGET_S + 120)
                    received = parse_time(info["last_delivery"]["received_at"])
                    done = parse_time(info["last_processed_at"])
                    assert info["last_delivery"]["event"] == "sweep", info["last_delivery"]
                    totals.append(done - pushed)
                    detections.append(received - pushed)
                    processings.append(done - received)
                    print(f"  trial {i + 1}: push → reconciled {totals[-1]:.1f} s (seen after"
                          f" {detections[-1]:.1f} s, processed in {processings[-1]:.2f} s)",
                          flush=True)  # fmt: skip
                floors.append(floor_once(server.data_dir, clone))
        finally:
            host.stop()
    report.add("interval", "60 s ± 20 % (the default)")
    report.add(f"push → reconciled, max of {trials} [s]", max(totals), "max_s")
    report.add("push → sweep delivery recorded, median [s]", median(detections), "detect_s")
    report.add("sweep delivery → reconciled, median [s]", median(processings), "process_s")
    report.add("floor: manifest generation, median [s]", median(floors), "floor_median_s")
    report.add("processing - floor [s]", median(processings) - median(floors), "difference_s")
    report.figures["floor"] = "shim manifest generation in the server's environment, no sandbox"
    report.figures["headline"] = "missed push → reconciled by the sweeper"
    report.figures["samples"] = [round(v, 3) for v in totals]
    report.figures["floor_samples"] = [round(v, 3) for v in floors]
    report.add(f"median ({trials} trials) [s]", median(totals), "median_s")
    report.add("target", f"≤ {TARGET_S:g} s (every trial)", "target")
    report.add("target met", "yes" if max(totals) <= TARGET_S else "NO")
    report.figures["met"] = max(totals) <= TARGET_S
    report.show()
    report.write(json_out(argv))
    return 0


if __name__ == "__main__":
    os.environ.pop("DOCKYARD_GITHUB_SWEEP_S", None)  # the default interval is what is measured
    sys.exit(main(sys.argv[1:]))
