"""`envs.env_spec`: what a job's virtualenv holds, and the key it is shared under."""

from typing import Any

import pytest

from dockyard.controller import envs
from dockyard.errors import InvalidInput
from tests.unit import samples
from tests.unit.samples import DASHBOARD, HELLO, TINY_API


def spec_for(ref: str, **changes: Any) -> envs.EnvSpec:
    requirements = samples.requirements()
    requirements.update(changes)
    return envs.env_spec(requirements, samples.job(ref))


def test_a_batch_job_gets_the_default_groups_and_the_pinned_dlt() -> None:
    spec = spec_for(HELLO)

    # `dlthub`, `s3fs` and `botocore` from the job launcher are left out
    assert spec == envs.EnvSpec("3.11", ("dlt==1.31.0", "duckdb"))


def test_dlt_comes_first_and_exactly_once() -> None:
    spec = spec_for(HELLO)

    assert spec.requirements[0] == "dlt==1.31.0"
    assert [r for r in spec.requirements if r.startswith("dlt")] == ["dlt==1.31.0"]


def test_dlt_is_pinned_from_dlt_version_not_from_the_groups() -> None:
    requirements = samples.requirements()
    requirements["groups"]["main"] = ["dlt>=1.20", "duckdb"]
    requirements["dlt_version"] = {"name": "dlt", "extras": [], "version": "1.31.0", "mode": "pypi"}

    spec = envs.env_spec(requirements, samples.job(HELLO))

    assert spec.requirements == ("dlt==1.31.0", "duckdb")


def test_dlt_installed_from_git_is_pinned_to_its_commit() -> None:
    spec = spec_for(
        HELLO,
        dlt_version={
            "name": "dlt",
            "extras": [],
            "version": "1.31.0",
            "mode": "git",
            "git_url": "https://github.com/dlt-hub/dlt.git",
            "git_rev": "0f3c2a1b",
        },
    )

    assert spec.requirements[0] == "dlt @ git+https://github.com/dlt-hub/dlt.git@0f3c2a1b"


def test_a_job_adds_its_dependency_groups_after_the_defaults() -> None:
    job = samples.job(HELLO)
    job["require"] = {"dependency_groups": ["reports"]}

    spec = envs.env_spec(samples.requirements(), job)

    assert spec.requirements == ("dlt==1.31.0", "duckdb", "tabulate")


def test_the_dashboard_gets_its_group_without_s3fs() -> None:
    spec = spec_for(DASHBOARD)

    assert spec.requirements == ("dlt==1.31.0", "duckdb", "ibis-framework", "marimo", "pyarrow")


def test_launcher_requirements_are_added_without_the_left_out_packages() -> None:
    job = samples.job(TINY_API)
    job["entry_point"]["launcher"] = "dlt._workspace.deployment.launchers.marimo"

    spec = envs.env_spec(samples.requirements(), job)

    assert spec.requirements == ("dlt==1.31.0", "duckdb", "marimo", "uvicorn")


def test_left_out_packages_are_matched_by_normalized_name() -> None:
    requirements = samples.requirements()
    requirements["groups"]["main"] = [
        "duckdb",
        "S3FS>=2024.1",
        "BotoCore==1.35.0",
        "dlthub[mcp]",
        "DLT==1.30.0",
        "botocore-stubs",
    ]

    spec = envs.env_spec(requirements, samples.job(HELLO))

    assert spec.requirements == ("dlt==1.31.0", "duckdb", "botocore-stubs")


def test_duplicates_are_removed_keeping_the_first() -> None:
    requirements = samples.requirements()
    requirements["groups"]["main"] = ["duckdb", "uvicorn", "tabulate"]
    job = samples.job(TINY_API)
    job["entry_point"]["launcher"] = "dlt._workspace.deployment.launchers.marimo"
    job["require"] = {"dependency_groups": ["reports", "main"]}

    spec = envs.env_spec(requirements, job)

    assert spec.requirements == ("dlt==1.31.0", "duckdb", "uvicorn", "tabulate", "marimo")


def test_lines_that_are_not_pep508_are_kept_as_written() -> None:
    requirements = samples.requirements()
    requirements["groups"]["main"] = ["duckdb", "-e ./libs/shared"]

    spec = envs.env_spec(requirements, samples.job(HELLO))

    assert spec.requirements == ("dlt==1.31.0", "duckdb", "-e ./libs/shared")


def test_an_unknown_dependency_group_is_invalid_input() -> None:
    job = samples.job(HELLO)
    job["require"] = {"dependency_groups": ["reporting"]}

    with pytest.raises(InvalidInput) as err:
        envs.env_spec(samples.requirements(), job)

    assert "'reporting'" in err.value.message
    assert HELLO in err.value.message
    assert "[dependency-groups]" in err.value.message


def test_a_missing_default_group_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="'main'"):
        spec_for(HELLO, groups={"reports": ["tabulate"]})


def test_missing_optional_sections_take_their_defaults() -> None:
    requirements = {
        "dlt_version": {"name": "dlt", "extras": [], "version": "1.31.0", "mode": "pypi"},
        "groups": {"main": ["duckdb"]},
    }

    spec = envs.env_spec(requirements, samples.job(HELLO))

    assert spec == envs.EnvSpec("", ("dlt==1.31.0", "duckdb"))


def test_the_key_ignores_requirement_order() -> None:
    a = envs.EnvSpec("3.11", ("dlt==1.31.0", "duckdb", "tabulate"))
    b = envs.EnvSpec("3.11", ("tabulate", "dlt==1.31.0", "duckdb"))

    assert a.key == b.key
    assert len(a.key) == 32
    assert int(a.key, 16) >= 0  # hex: safe as a directory name


def test_the_key_is_pinned() -> None:
    # not a hash of Python objects: the same on every process and server; changing how it is
    # computed orphans every environment already built (they would all be rebuilt)
    spec = envs.EnvSpec("3.11", ("dlt==1.31.0", "duckdb"))

    assert spec.key == "703df06cb5a8304b95863ffaae318c0a"


def test_the_key_changes_with_python_or_any_requirement() -> None:
    base = envs.EnvSpec("3.11", ("dlt==1.31.0", "duckdb"))

    assert base.key != envs.EnvSpec("3.12", base.requirements).key
    assert base.key != envs.EnvSpec("3.11", ("dlt==1.31.1", "duckdb")).key
    assert base.key != envs.EnvSpec("3.11", ("dlt==1.31.0",)).key


def test_jobs_with_the_same_requirements_share_an_environment() -> None:
    other = samples.job(TINY_API)  # same launcher, same groups as hello

    assert envs.env_spec(samples.requirements(), other).key == spec_for(HELLO).key


def test_dlt_extras_asked_for_by_the_workspace_are_kept() -> None:
    requirements = samples.requirements()
    requirements["groups"]["main"] = ["dlt[duckdb,parquet]==1.31.0", "tabulate"]

    spec = envs.env_spec(requirements, samples.job(HELLO))

    assert spec.requirements == ("dlt[duckdb,parquet]==1.31.0", "tabulate")
