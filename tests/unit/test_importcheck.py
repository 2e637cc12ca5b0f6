"""Deploy's import check, its pure parts: which jobs are checked, which share an environment,
and the words of each problem and warning."""

from typing import Any

from dockyard.controller import envs, importcheck, importfix
from dockyard.controller.importcheck import Failure

JOB = "dlt._workspace.deployment.launchers.job"
REQUIREMENTS: dict[str, Any] = {
    "python_version": "3.11",
    "dlt_version": {"name": "dlt", "extras": [], "version": "1.31.0", "mode": "pypi"},
    "default_groups": ["main"],
    "groups": {
        "main": ["dlt[workspace]==1.31.0"],
        "ibis": ["ibis-framework[duckdb]"],
        "reports": ["pyyaml"],
        "jobs.workspace.dashboard": ["ibis-framework", "marimo"],
    },
    "launcher_requirements": {JOB: ["botocore", "dlthub", "s3fs"]},
}


def job(name: str, module: str, *groups: str, launcher: str = JOB) -> dict[str, Any]:
    out: dict[str, Any] = {
        "job_ref": f"jobs.{module}.{name}",
        "entry_point": {"module": module, "function": name, "launcher": launcher},
    }
    if groups:
        out["require"] = {"dependency_groups": list(groups)}
    return out


def failure(**overrides: Any) -> Failure:
    base: dict[str, Any] = {
        "module": "__deployment__",
        "jobs": ("transform_x",),
        "kind": "missing",
        "missing": "ibis",
        "error_type": "ModuleNotFoundError",
        "error": "No module named 'ibis'",
        "where": "usgs/transformations.py:13",
        "groups": ("reports",),
    }
    return Failure(**{**base, **overrides})


def test_only_jobs_running_deployed_modules_are_checked() -> None:
    manifest = {
        "jobs": [
            job("a", "__deployment__"),
            job("b", "pkg.mod"),
            job("c", "pkg"),
            job("dashboard", "dlt._workspace.helpers.dashboard.dlt_dashboard"),
        ]
    }
    files = [{"path": p} for p in ("__deployment__.py", "pkg/__init__.py", "pkg/mod.py")]
    checked = importcheck.workspace_jobs(manifest, files)
    assert [j["entry_point"]["function"] for j in checked] == ["a", "b", "c"]


def test_jobs_with_one_requirement_set_share_one_environment() -> None:
    jobs = [
        job("a", "__deployment__"),
        job("b", "pkg.mod"),
        job("c", "pkg.mod", "ibis"),
        job("d", "other", "main"),  # the default group again: the same set as a and b
    ]
    groups = importcheck.groups(REQUIREMENTS, jobs)
    assert [[importcheck.job_name(j) for j in g.jobs] for g in groups] == [["a", "b", "d"], ["c"]]
    assert groups[0].modules == ["__deployment__", "other", "pkg.mod"]
    # the same computation a run's preparation uses
    assert groups[1].spec == envs.env_spec(REQUIREMENTS, jobs[2])
    assert groups[1].spec.requirements == ("dlt[workspace]==1.31.0", "ibis-framework[duckdb]")


def test_undeclared_distribution_names_the_group_the_job_requires() -> None:
    lines = importfix.problems([failure()], REQUIREMENTS, {"ibis": ["ibis-framework"]}, True)
    assert lines == [
        "module `ibis` is missing for job `transform_x` (imported by `__deployment__` at"
        " usgs/transformations.py:13): add `ibis-framework` to `[project.dependencies]` or to"
        " the group `reports` that job `transform_x` requires, or make job `transform_x`"
        ' require the group `ibis` that declares it (`require={"dependency_groups": ["ibis"]}`)'
    ]


def test_without_groups_or_pyproject_the_fix_is_the_main_dependencies() -> None:
    plain = failure(groups=(), jobs=("a", "b"))
    dists = {"ibis": ["ibis-framework"]}
    no_groups = {**REQUIREMENTS, "groups": {"main": ["dlt"]}}
    assert importfix.problems([plain], no_groups, dists, True)[0].endswith(
        ": add `ibis-framework` to `[project.dependencies]`"
    )
    assert "jobs `a`, `b`" in importfix.problems([plain], no_groups, dists, True)[0]
    assert importfix.problems([plain], no_groups, dists, False)[0].endswith(
        ": add `ibis-framework` to requirements.txt"
    )


def test_unknown_distribution_and_other_import_errors() -> None:
    unknown = importfix.problems([failure(missing="nowhere.sub")], REQUIREMENTS, {}, True)[0]
    assert "module `nowhere.sub` is missing" in unknown
    assert "no installed distribution provides it" in unknown
    raised = failure(
        kind="error", missing=None, error_type="ValueError", error="bad\n value", where="a.py:3"
    )
    line = importfix.problems([raised], REQUIREMENTS, {}, True)[0]
    assert line.startswith("job `transform_x`: importing `__deployment__` raised ValueError: bad")
    assert "value (a.py:3)" in line and "\n" not in line


def test_extra_the_package_lacks_is_one_warning_per_package_and_extra() -> None:
    extras = [
        {"requirement": "dlt[workspace]==1.31.0", "package": "dlt", "version": "1.31.0",
         "missing": ["workspace"]},
        {"requirement": "dlt[workspace]==1.31.0", "package": "dlt", "version": "1.31.0",
         "missing": ["workspace"]},
    ]  # fmt: skip
    assert importfix.extra_warnings(extras, REQUIREMENTS) == [
        "`dlt[workspace]` (asked for in group `main`): dlt 1.31.0 has no extra `workspace`,"
        " so it installs nothing more; remove `workspace` from the requirement or fix its name"
    ]
