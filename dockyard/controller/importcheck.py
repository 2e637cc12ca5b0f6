"""Deploy's import check: each job's module imported in the environment that job will run in.

A manifest is generated in the deployer's own environment, which may hold packages the
workspace never declares; deploy then passes and the jobs fail at their first run with
`No module named …`. So deploy builds each job's environment from the deployment's declared
requirements with `envs.env_spec` — the very computation the server's runs use, so the same
set and key — and `envs.EnvBuilder` (cached by that key), and imports the jobs' modules there
through the shim, from a staged copy of exactly the deployed files. Jobs sharing an
environment share one child process. A module found missing is traced, in the environment
that made the manifest, to the distribution that provides it and the groups that declare it,
so the refusal names the fix (`importfix`). A passing check is remembered by environment and
file contents, so deploying unchanged code again imports nothing.

Only jobs whose module is one of the deployed files are checked: the synthesized dashboard
runs dlt's own module. Neither the CLI process nor the control plane imports user code; the
shim does, in a child process.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.controller import envs
from dockyard.controller.inspection import INSPECT_TIMEOUT_S, Inspection, Wrap
from dockyard.errors import InvalidInput, Unavailable
from dockyard.shim import SHIM

MAX_ANSWER = 1_000_000  # bytes of the shim's answer read


@dataclass(frozen=True, slots=True)
class Failure:
    """A module that did not import, for the jobs (of one environment) that run it."""

    module: str
    jobs: tuple[str, ...]
    kind: str  # "missing" (ModuleNotFoundError) or "error" (anything else raised)
    missing: str | None
    error_type: str
    error: str
    where: str | None
    groups: tuple[str, ...]  # the dependency groups those jobs require


@dataclass
class Outcome:
    failures: list[Failure] = field(default_factory=list)
    extras: list[dict[str, Any]] = field(default_factory=list)  # the shim's `extras`
    jobs: int = 0  # how many jobs were checked
    environments: list[str] = field(default_factory=list)  # their keys
    reused: int = 0  # passes answered from the remembered results


@dataclass(frozen=True, slots=True)
class Group:
    """Jobs sharing one requirement set: one environment, one import pass."""

    spec: envs.EnvSpec
    jobs: tuple[dict[str, Any], ...]

    @property
    def modules(self) -> list[str]:
        return sorted({j["entry_point"]["module"] for j in self.jobs})


def workspace_jobs(manifest: dict[str, Any], files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs whose entry module is one of the deployed files (not dlt's own modules)."""
    paths = {f["path"] for f in files}
    out = []
    for job in manifest.get("jobs", []):
        module = str(job.get("entry_point", {}).get("module") or "")
        stem = module.replace(".", "/")
        if module and ({f"{stem}.py", f"{stem}/__init__.py"} & paths):
            out.append(job)
    return out


def groups(requirements: dict[str, Any], jobs: list[dict[str, Any]]) -> list[Group]:
    """The jobs by the environment each runs in (`envs.env_spec`, as a run prepares it)."""
    by_key: dict[str, tuple[envs.EnvSpec, list[dict[str, Any]]]] = {}
    for job in jobs:
        spec = envs.env_spec(requirements, job)
        by_key.setdefault(spec.key, (spec, []))[1].append(job)
    return [Group(spec, tuple(js)) for spec, js in by_key.values()]


Progress = Callable[[str], None]


def check(
    seen: Inspection,
    builder: envs.EnvBuilder,
    results_dir: Path,
    progress: Progress,
    wrap: Wrap | None = None,
) -> Outcome:
    """Import every workspace job's module in its own environment (built if missing)."""
    jobs = workspace_jobs(seen.manifest, seen.files)
    outcome = Outcome(jobs=len(jobs))
    pending: list[tuple[Group, Path, Path]] = []
    for group in groups(seen.requirements, jobs):
        outcome.environments.append(group.spec.key)
        remembered = results_dir / f"{_result_key(seen, group)}.json"
        if remembered.is_file():
            outcome.extras += json.loads(remembered.read_text())["extras"]
            outcome.reused += 1
            continue
        pending.append((group, _ensure(builder, group, progress), remembered))
    # the passes are child processes mostly importing dlt: side by side, one per core
    workers = max(1, min(len(pending), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        answers = list(pool.map(lambda p: import_pass(seen, p[1], p[0], wrap), pending))
    for (group, _python, remembered), answer in zip(pending, answers, strict=True):
        outcome.extras += answer["extras"]
        failed = _failures(group, answer["modules"])
        outcome.failures += failed
        if not failed:
            _remember(remembered, answer["extras"])
    return outcome


def _ensure(builder: envs.EnvBuilder, group: Group, progress: Progress) -> Path:
    try:
        return builder.ensure(group.spec, _building(progress, group))
    except Unavailable as exc:
        names = ", ".join(f"`{job_name(j)}`" for j in group.jobs)
        jobs, they = (f"job {names}", "it") if len(group.jobs) == 1 else (f"jobs {names}", "they")
        raise InvalidInput(
            f"the environment of {jobs} cannot be built, so {they} could not run either"
            f" ({exc.message}); fix the requirements, or deploy anyway with --skip-import-check"
        ) from None


def _building(progress: Progress, group: Group) -> envs.LineSink:
    names = ", ".join(job_name(j) for j in group.jobs)

    def sink(line: str) -> None:
        if line.startswith("building environment"):
            progress(f"import check: {line} for {names}")

    return sink


def job_name(job: dict[str, Any]) -> str:
    return str(job["job_ref"]).rsplit(".", 1)[-1]


def _failures(group: Group, modules: dict[str, Any]) -> list[Failure]:
    required = sorted(
        {g for j in group.jobs for g in j.get("require", {}).get("dependency_groups", [])}
    )
    out = []
    for module in group.modules:
        found = modules.get(module)
        if not found:
            continue
        jobs = tuple(job_name(j) for j in group.jobs if j["entry_point"]["module"] == module)
        out.append(
            Failure(
                module=module,
                jobs=jobs,
                kind=str(found["kind"]),
                missing=found.get("missing"),
                error_type=str(found["type"]),
                error=str(found["error"]),
                where=found.get("where"),
                groups=tuple(required),
            )
        )
    return out


def import_pass(
    seen: Inspection, python: Path, group: Group, wrap: Wrap | None = None
) -> dict[str, Any]:
    """One child process in the job environment imports the group's modules from a fresh
    staged copy of the deployed files (the manifest worker's import left its own traces in
    the inspection's stage)."""
    request = json.dumps({"modules": group.modules, "requirements": list(group.spec.requirements)})
    with tempfile.TemporaryDirectory(prefix="dockyard-imports-") as tmp:
        stage = Path(tmp)
        copy_stage(seen, stage)
        argv = [str(python), str(SHIM), "imports", str(stage), request]
        try:
            proc = subprocess.run(
                argv if wrap is None else wrap(argv, stage),
                capture_output=True,
                text=True,
                cwd=stage,
                env=dict(os.environ),
                timeout=INSPECT_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise InvalidInput(
                f"importing the jobs' modules took longer than {INSPECT_TIMEOUT_S:.0f}s; does"
                " importing them do work at import time?"
            ) from None
    return _answer(proc)


def _answer(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = json.loads(proc.stdout[:MAX_ANSWER])
    except ValueError:
        answer = {}
    if not isinstance(answer, dict) or not {"modules", "extras"} <= answer.keys():
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise InvalidInput(
            f"the import check failed in a job's environment: {tail[0][:300]};"
            " deploy with --skip-import-check to deploy anyway"
        ) from None
    return answer


def copy_stage(seen: Inspection, target: Path) -> None:
    """The deployed files (code and `.dlt` configuration) as the inspection staged them."""
    for entry in seen.files + seen.config:
        source, dest = seen.stage / entry["path"], target / entry["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        if entry.get("link") is not None:
            os.symlink(entry["link"], dest)
        else:
            shutil.copy2(source, dest)
    (target / ".dlt").mkdir(exist_ok=True)
    (target / ".dlt" / ".workspace").touch()


def _result_key(seen: Inspection, group: Group) -> str:
    """What decides an import pass: the environment, the modules and every deployed byte."""
    digest = hashlib.sha256()
    digest.update(json.dumps([group.spec.key, group.modules]).encode())
    for entry in sorted(seen.files + seen.config, key=lambda e: str(e["path"])):
        digest.update(str(entry["path"]).encode() + b"\0")
        if entry.get("link") is not None:
            digest.update(b"link:" + str(entry["link"]).encode())
        else:
            digest.update(hashlib.sha256((seen.stage / entry["path"]).read_bytes()).digest())
    return digest.hexdigest()[:32]


def _remember(path: Path, extras: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"extras": extras}))
    os.replace(tmp, path)


def distributions(python: str, names: list[str]) -> dict[str, list[str]]:
    """Top-level import name → distributions providing it, in the environment `python` (the
    one that made the manifest). Empty when it cannot tell."""
    if not names:
        return {}
    proc = subprocess.run(
        [python, str(SHIM), "distributions", *sorted(set(names))],
        capture_output=True,
        text=True,
        timeout=INSPECT_TIMEOUT_S,
    )
    try:
        found = json.loads(proc.stdout[:MAX_ANSWER])
    except ValueError:
        return {}
    return {str(k): [str(d) for d in v] for k, v in found.items() if isinstance(v, list)}
