"""Reading a manifest is bounded: no YAML construct makes a small file big or slow to load
(issue 10, item 5). Every reader (hook, reconciler, API, dashboard, CLI) goes through
`manifests.load_yaml`."""

import pytest

from dockyard.controller import manifests
from dockyard.errors import InvalidInput
from tests.unit import samples
from tests.unit.samples import HELLO


def test_nested_aliases_are_refused_before_anything_is_built() -> None:
    # 9 levels of 9: 387,420,489 strings from 700 bytes
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, 9):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]")
    text = "\n".join(lines) + "\njobs: []\n"

    with pytest.raises(InvalidInput, match="anchor or alias at line 1") as err:
        manifests.load_yaml(text)

    assert "\n" not in err.value.message


@pytest.mark.parametrize(
    "text",
    [
        "jobs: []\nbase: &b {x: 1}\n",  # an anchor even without an alias
        "base: &b {x: 1}\nother: *b\njobs: []\n",
        "base: &b {x: 1}\nother:\n  <<: *b\njobs: []\n",  # merge keys are aliases too
    ],
)
def test_any_anchor_or_alias_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="anchor or alias"):
        manifests.load_yaml(text)


def test_deep_nesting_is_refused() -> None:
    text = (
        "jobs: []\nx: "
        + "[" * (manifests.MAX_YAML_DEPTH + 1)
        + "]" * (manifests.MAX_YAML_DEPTH + 1)
    )

    with pytest.raises(InvalidInput, match="nested deeper than"):
        manifests.load_yaml(text)


def test_too_many_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests, "MAX_YAML_NODES", 50)

    with pytest.raises(InvalidInput, match="more than 50 values"):
        manifests.load_yaml("jobs: []\nx: [" + ", ".join(["1"] * 60) + "]\n")


def test_a_manifest_over_the_byte_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests, "MAX_MANIFEST_BYTES", 100)

    with pytest.raises(InvalidInput, match="over the limit of 100"):
        manifests.load_yaml("jobs: []\n" + "#" * 100 + "\n")


def test_too_many_jobs_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests, "MAX_JOBS", 2)
    manifest = samples.manifest(HELLO)
    manifest["jobs"] = [dict(manifest["jobs"][0], job_ref=f"jobs.m.j{i}") for i in range(3)]

    with pytest.raises(InvalidInput, match="3 jobs, over the limit of 2"):
        manifests.load_yaml(manifests.dump_yaml(manifest))


def test_a_number_python_will_not_parse_is_one_line() -> None:
    with pytest.raises(InvalidInput, match="cannot be read"):
        manifests.load_yaml("jobs: []\nx: " + "9" * 5000 + "\n")


@pytest.mark.parametrize("jobs", ["jobs: 3\n", "jobs: [1, 2]\n", "jobs:\n  - {name: x}\n"])
def test_jobs_that_are_not_jobs_are_refused(jobs: str) -> None:
    with pytest.raises(InvalidInput, match="must be a list of jobs, each with a job_ref"):
        manifests.load_yaml(jobs)


def test_what_dump_yaml_writes_loads_even_with_shared_values() -> None:
    manifest = samples.manifest(HELLO)
    tags = ["a", "b"]
    manifest["jobs"][0]["expose"]["tags"] = tags
    manifest["shared"] = tags  # the same list twice would be an alias in plain PyYAML

    text = manifests.dump_yaml(manifest)

    assert "&" not in text and "*" not in text
    assert manifests.load_yaml(text)["shared"] == ["a", "b"]
