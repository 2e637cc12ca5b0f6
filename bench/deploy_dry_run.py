"""`dockyard deploy --dry-run` of a 100-job workspace, against manifest generation alone.

A real server process and the real CLI. The generated workspace (100 `@run.job` functions in
`__deployment__.py`, listed in `__all__`) is deployed once, so the dry run plans against a
real HEAD, then `deploy --dry-run -o json` is timed N times (after one untimed run).

The CLI has no `.venv` in the workspace and no active virtualenv, so `find_python` builds
(once) and then reuses an environment under `$XDG_CACHE_HOME/dockyard/envs/<hash>`. The floors
run in that same interpreter, with the same environment, each N times, interleaved with the
dry runs:

- shim          `<python> dockyard/shim/dlt_shim.py inspect <ws> <stage> __deployment__`,
                exactly as `dockyard/cli/workspace.py:inspect` starts it (manifest generation
                as the CLI does it: file selection, staging, dlt's worker, requirements)
- bare worker   `<python> -c "import dlt.hub.run, runpy, sys; …_manifest_worker…"` in the
                workspace (dlt's own manifest generation, nothing of dockyard)

The CLI's own share is broken down with `python -m dockyard --version` (start-up and
imports), `-X importtime` (the heaviest imports) and one cProfile'd dry run.

Usage: python bench/deploy_dry_run.py [-n 5] [--jobs 100] [--json-out FILE]
"""

import json
import pstats
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    PYTHON,
    REPO,
    Cli,
    Report,
    int_arg,
    json_out,
    median,
    print_machine,
    pyproject,
    running_server,
    time_command,
    timed,
    write_files,
)

TARGET_OVER_FLOOR_S = 0.5
SHIM = REPO / "dockyard" / "shim" / "dlt_shim.py"
WORKER = (
    "import dlt.hub.run, runpy, sys; sys.argv = ['w', '__deployment__'];"
    " runpy.run_module('dlt._workspace.deployment._manifest_worker', run_name='__main__')"
)
PROFILED = (
    ("import dockyard.cli.main", "dockyard/cli/main.py", "<module>"),
    ("deploy() in all", "dockyard/cli/deploy.py", "deploy"),
    ("  workspace.inspect (runs the shim)", "dockyard/cli/workspace.py", "inspect"),
    ("    subprocess.run (the shim process)", "lib/python3.11/subprocess.py", "run"),
    ("  manifests.validate_schema", "dockyard/controller/manifests.py", "validate_schema"),
    ("  Mirror.manifest (parse HEAD's YAML)", "dockyard/cli/gitpush.py", "manifest"),
    ("  workspace.find_python", "dockyard/cli/workspace.py", "find_python"),
    ("  deployfiles.deploy_files", "dockyard/controller/deployfiles.py", "deploy_files"),
    ("  Mirror.fetch (git over HTTP)", "dockyard/cli/gitpush.py", "fetch"),
    ("  require_workspace (API)", "dockyard/cli/deploytarget.py", "require_workspace"),
    ("  _current (API)", "dockyard/cli/deploy.py", "_current"),
    ("  planning.plan", "dockyard/controller/planning.py", "plan"),
)


def deployment_module(jobs: int) -> str:
    body = [f'"""{jobs} no-op jobs."""', "", "from dlt.hub import run", ""]
    for i in range(jobs):
        body += ["", f'@run.job(expose={{"tags": ["t{i % 5}"]}})', f"def job_{i:03d}() -> None:"]
        body += [f'    """Job number {i}."""', "    pass", ""]
    names = ", ".join(f'"job_{i:03d}"' for i in range(jobs))
    return "\n".join([*body, "", f"__all__ = [{names}]", ""])


def workspace(root: Path, jobs: int) -> Path:
    return write_files(
        root,
        {
            ".dlt/.workspace": "",
            "pyproject.toml": pyproject("many_jobs"),
            "__deployment__.py": deployment_module(jobs),
        },
    )


def cli_python(cli: Cli) -> Path:
    """The interpreter `find_python` built for the workspace (the only one in the cache)."""
    ready = sorted((cli.home / "cache" / "dockyard" / "envs").glob("*/.ready"))
    if len(ready) != 1:
        raise RuntimeError(f"expected one CLI environment, found {ready}")
    return ready[0].parent / "bin" / "python"


def shim_env(cli: Cli) -> dict[str, str]:
    """What `workspace.inspect` gives the shim: the CLI's environment, uv on PATH, pathspec."""
    from uv import find_uv_bin

    env = cli.env()
    env["PATH"] = f"{Path(find_uv_bin()).parent}:{env.get('PATH', '')}"
    homes = sorted((cli.home / "cache" / "dockyard" / "shimlib").glob("pathspec-*"))
    env["DOCKYARD_SHIM_PATHS"] = str(homes[-1])
    return env


def shim_once(python: Path, ws: Path, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory(prefix="dockyard-stage-") as stage:
        argv = [str(python), str(SHIM), "inspect", str(ws), stage, "__deployment__"]
        return time_command(argv, 1, env=env, cwd=ws, warmup=0)[0]


def worker_once(python: Path, ws: Path, env: dict[str, str]) -> float:
    return time_command([str(python), "-c", WORKER], 1, env=env, cwd=ws, warmup=0)[0]


def dry_run_once(cli: Cli, ws: Path, jobs: int) -> float:
    elapsed, proc = timed(lambda: cli.run("deploy", "--dry-run", "-o", "json", cwd=ws))
    planned = json.loads(proc.stdout)
    if len(planned["unchanged"]) < jobs or not planned["dry_run"]:
        raise RuntimeError(f"unexpected dry-run output: {proc.stdout[:500]}")
    return elapsed


def import_times(cli: Cli, top: int = 7) -> list[tuple[str, float]]:
    """`python -X importtime -m dockyard --help`: the CLI's own import, and the heaviest
    packages it pulls in (cumulative, wherever in the tree they are first imported)."""
    proc = subprocess.run(
        [PYTHON, "-X", "importtime", "-m", "dockyard", "--help"],
        env=cli.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, float] = {}
    ancestors: list[tuple[int, str]] = []
    # a module's line comes after those of the imports it made, one indent deeper: walk
    # backwards to know each line's ancestors
    for line in reversed(proc.stderr.splitlines()):
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( +)(\S+)", line)
        if match is None:
            continue
        depth, name = len(match.group(2)), match.group(3)
        while ancestors and ancestors[-1][0] >= depth:
            ancestors.pop()
        outer = [a for _, a in ancestors if not a.startswith("dockyard")]
        top_level_package = "." not in name and name != "dockyard" and not outer
        if name == "dockyard.cli.main" or top_level_package:
            found[name] = int(match.group(1)) / 1e6
        ancestors.append((depth, name))
    return sorted(found.items(), key=lambda item: -item[1])[:top]


def profile(cli: Cli, ws: Path, tmp: Path) -> dict[str, float]:
    """Cumulative seconds of the CLI's main steps in one cProfile'd dry run."""
    out = tmp / "deploy.prof"
    argv = [PYTHON, "-m", "cProfile", "-o", str(out), "-m", "dockyard", "deploy", "--dry-run"]
    subprocess.run(argv, env=cli.env(), cwd=ws, capture_output=True, check=True)
    stats: Any = pstats.Stats(str(out))
    total = max(row[3] for row in stats.stats.values())
    found = {"whole process (profiled)": float(total)}
    for label, suffix, function in PROFILED:
        found[label] = sum(
            row[3]
            for (path, _line, name), row in stats.stats.items()
            if name == function and path.endswith(suffix)
        )
    return found


def bench(repeat: int, jobs: int) -> Report:
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp_name:
        tmp = Path(tmp_name)
        ws = workspace(tmp / "many_jobs", jobs)
        with running_server(tmp) as server:
            cli = Cli(server, tmp / "home", "bench-many")
            first_s = timed(lambda: cli.run("deploy", cwd=ws))[0]
            python = cli_python(cli)
            env = shim_env(cli)
            dry_run_once(cli, ws, jobs)  # warm-up, untimed
            shim_once(python, ws, env)
            worker_once(python, ws, env)
            dry, shim, worker = [], [], []
            for _ in range(repeat):  # interleaved, so drift on a shared machine hits all three
                dry.append(dry_run_once(cli, ws, jobs))
                shim.append(shim_once(python, ws, env))
                worker.append(worker_once(python, ws, env))
            version = time_command(cli.argv("--version"), repeat, env=cli.env())
            imports = import_times(cli)
            profiled = profile(cli, ws, tmp)
    rep = Report(f"deploy --dry-run: {jobs}-job workspace (real server and CLI)")
    rep.figures["floor"] = "dlt_shim.py inspect, as the CLI runs it"
    rep.add("CLI's workspace python", "$XDG_CACHE_HOME/dockyard/envs/<hash>/bin/python")
    rep.add("first deploy (builds the CLI's env) [s]", first_s, "first_deploy_s")
    rep.headline(dry, shim, TARGET_OVER_FLOOR_S, over_floor=True)
    rep.add("bare dlt worker, median [s]", median(worker), "bare_worker_s")
    rep.add("dry run - bare worker [s]", median(dry) - median(worker), "over_worker_s")
    rep.add("python -m dockyard --version, median [s]", median(version), "cli_version_s")
    for name, seconds in imports:
        rep.add(f"  import {name} (-X importtime, cumulative) [s]", seconds)
    for label, seconds in profiled.items():
        rep.add(f"  cProfile: {label} [s]", seconds)
    rep.figures["profile"] = profiled
    rep.figures["imports"] = dict(imports)
    return rep


def main(argv: list[str]) -> int:
    print_machine()
    rep = bench(int_arg(argv, "-n", 5), int_arg(argv, "--jobs", 100))
    rep.show()
    rep.write(json_out(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
