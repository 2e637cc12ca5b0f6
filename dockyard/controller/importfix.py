"""The words of deploy's import check (pure): one line per problem, naming the fix.

A missing module is named with the distribution that provides it in the environment that
made the manifest (`importlib.metadata.packages_distributions()` there) and the dependency
groups that declare that distribution, so the line says where to add what:
"add `python-dotenv` to `[project.dependencies]` or to the group `reports` that job
`summarize` requires". An extra that the installed package does not have is a warning.
"""

from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from dockyard.controller.importcheck import Failure

MAX_TEXT = 300
# groups dlt adds to every requirements manifest (the dashboard job's, the agent loops'): not
# the workspace's own, so never the place to declare something
DLT_GROUP_PREFIXES = ("jobs.", "agent-loop-")


def problems(
    failures: list[Failure],
    requirements: dict[str, Any],
    dists: dict[str, list[str]],
    pyproject: bool,
) -> list[str]:
    """One line per module that did not import."""
    return [
        _missing(f, requirements, dists, pyproject) if f.kind == "missing" else _raised(f)
        for f in failures
    ]


def top_level(module: str) -> str:
    return module.split(".", 1)[0]


def _jobs(failure: Failure) -> str:
    names = ", ".join(f"`{j}`" for j in failure.jobs)
    return f"job {names}" if len(failure.jobs) == 1 else f"jobs {names}"


def _at(failure: Failure) -> str:
    return f" at {failure.where}" if failure.where else ""


def _raised(failure: Failure) -> str:
    text = " ".join(failure.error.split())[:MAX_TEXT]
    return (
        f"{_jobs(failure)}: importing `{failure.module}` raised {failure.error_type}: {text}"
        f" ({failure.where or 'no workspace file on the traceback'}) in the environment the"
        " job runs in; fix the module (it imported in the environment that made the manifest,"
        " so check which packages or versions it relies on)"
    )


def _missing(
    failure: Failure, requirements: dict[str, Any], dists: dict[str, list[str]], pyproject: bool
) -> str:
    missing = failure.missing or "?"
    head = (
        f"module `{missing}` is missing for {_jobs(failure)}"
        f" (imported by `{failure.module}`{_at(failure)})"
    )
    provided_by = dists.get(top_level(missing), [])
    if not provided_by:
        where = "`[project.dependencies]`" if pyproject else "requirements.txt"
        return (
            f"{head}: no installed distribution provides it in the environment that made the"
            f" manifest either; add the package that provides `{missing}` to {where}"
        )
    return f"{head}: {_fix(failure, provided_by, requirements, pyproject)}"


def _fix(
    failure: Failure, provided_by: list[str], requirements: dict[str, Any], pyproject: bool
) -> str:
    dist = " or ".join(f"`{d}`" for d in provided_by)
    if not pyproject:
        return f"add {dist} to requirements.txt"
    fix = f"add {dist} to `[project.dependencies]`"
    required = [g for g in failure.groups if g not in requirements.get("default_groups", [])]
    if len(required) == 1:
        fix += f" or to the group `{required[0]}` that {_jobs(failure)} {_verb(failure)}"
    elif required:
        names = ", ".join(f"`{g}`" for g in required)
        fix += f" or to one of the groups {names} that {_jobs(failure)} {_verb(failure)}"
    declared = declaring_groups(requirements, provided_by)
    if declared:
        names = ", ".join(f"`{g}`" for g in declared)
        noun = "group" if len(declared) == 1 else "groups"
        fix += (
            f", or make {_jobs(failure)} require the {noun} {names} that"
            f" {'declares' if len(declared) == 1 else 'declare'} it"
            f' (`require={{"dependency_groups": ["{declared[0]}"]}}`)'
        )
    return fix


def _verb(failure: Failure) -> str:
    return "requires" if len(failure.jobs) == 1 else "require"


def declaring_groups(requirements: dict[str, Any], dists: list[str]) -> list[str]:
    """The declared groups naming one of `dists` (the defaults left out: jobs have them)."""
    wanted = {canonicalize_name(d) for d in dists}
    defaults = set(requirements.get("default_groups", ["main"]))
    out = []
    for name, specs in (requirements.get("groups") or {}).items():
        if name in defaults or str(name).startswith(DLT_GROUP_PREFIXES):
            continue
        if any(_name(s) in wanted for s in specs):
            out.append(str(name))
    return sorted(out)


def _name(spec: str) -> str | None:
    try:
        return canonicalize_name(Requirement(spec).name)
    except InvalidRequirement:
        return None


def extra_warnings(extras: list[dict[str, Any]], requirements: dict[str, Any]) -> list[str]:
    """One warning per package and extra that the installed package does not provide."""
    seen: set[tuple[str, str]] = set()
    out = []
    for found in extras:
        package, version = str(found["package"]), str(found["version"])
        for extra in found["missing"]:
            if (canonicalize_name(package), extra) in seen:
                continue
            seen.add((canonicalize_name(package), extra))
            groups = _groups_asking(requirements, package, str(extra))
            where = f" (asked for in {groups})" if groups else ""
            out.append(
                f"`{package}[{extra}]`{where}: {package} {version} has no extra `{extra}`, so it"
                f" installs nothing more; remove `{extra}` from the requirement or fix its name"
            )
    return out


def _groups_asking(requirements: dict[str, Any], package: str, extra: str) -> str:
    wanted = canonicalize_name(package)
    names = []
    for name, specs in (requirements.get("groups") or {}).items():
        for spec in specs:
            try:
                req = Requirement(spec)
            except InvalidRequirement:
                continue
            if canonicalize_name(req.name) == wanted and extra in req.extras:
                names.append(f"`{name}`")
                break
    return ("group " if len(names) == 1 else "groups ") + ", ".join(names) if names else ""
