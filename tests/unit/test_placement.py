"""Placement rules: dlt's `require` fields mapped to a pool and labels by the placement file,
and the file's validation (a bad file is one line naming the file, the key and the fix)."""

from pathlib import Path

import pytest

from dockyard.controller import placement, unplaced
from dockyard.controller.placement import Placement, PlacementError, Rules

RULES = """
[instance.size]
large = { pool = "big" }
gpu = { pool = "gpu", labels = { accel = "a100" } }
[region]
eu-west-1 = { labels = { region = "eu" } }
us-east-1 = { pool = "us" }
[provider]
aws = { labels = { cloud = "aws" } }
"""


def rules(tmp_path: Path, text: str = RULES) -> Rules:
    path = tmp_path / "placement.toml"
    path.write_text(text)
    return Rules.load(path)


def job(**require: object) -> dict[str, object]:
    return {"job_ref": "jobs.a.b", "require": require}


def test_no_requirement_or_no_rule_is_the_default_pool(tmp_path: Path) -> None:
    r = rules(tmp_path)
    assert r.place({"job_ref": "jobs.a.b"}) == Placement("default", {}, [])
    assert r.place(job(dependency_groups=["x"], profile="prod")) == Placement()
    assert Rules().place(job(instance={"size": "large"})) == Placement(
        "default", {}, ["instance.size=large"]
    )
    assert Placement().embedded


def test_rules_give_one_pool_and_the_union_of_labels(tmp_path: Path) -> None:
    r = rules(tmp_path)
    assert r.place(job(instance={"size": "large"})) == Placement("big", {}, [])
    both = r.place(job(instance={"size": "gpu"}, region="eu-west-1", provider="aws"))
    assert both == Placement("gpu", {"accel": "a100", "region": "eu", "cloud": "aws"}, [])
    assert not both.embedded
    labelled = r.place(job(region="eu-west-1", provider="gcp", instance={"cpu": 4}))
    assert labelled == Placement("default", {"region": "eu"}, ["instance.cpu=4", "provider=gcp"])
    assert not labelled.embedded  # default pool, but labels: a worker's


def test_two_pools_is_an_error_naming_both(tmp_path: Path) -> None:
    with pytest.raises(PlacementError) as caught:
        rules(tmp_path).place(job(instance={"size": "large"}, region="us-east-1"))
    assert "'big' (instance.size=large) and 'us' (region=us-east-1)" in caught.value.message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[machine]\nlarge = { pool = 'big' }\n", "'machine'"),
        ("[region]\neu = { pool = 'big', size = 1 }\n", "'region.eu'"),
        ("[region]\neu = {}\n", "'region.eu'"),
        ("[region]\neu = { pool = 'b g' }\n", "'region.eu.pool'"),
        ("[region]\neu = { labels = { a = 1 } }\n", "'region.eu.labels'"),
        ("region = 'eu'\n", "'region'"),
        ("[instance]\nsize = 'large'\n", "'instance.size'"),
    ],
)
def test_a_bad_file_names_the_file_and_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(PlacementError) as caught:
        rules(tmp_path, text)
    message = caught.value.message
    assert message.startswith(f"placement file {tmp_path / 'placement.toml'}: key {key}")
    assert "\n" not in message


def test_an_unreadable_or_invalid_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(PlacementError, match="cannot read it"):
        Rules.load(tmp_path / "missing.toml")
    with pytest.raises(PlacementError, match="not valid TOML"):
        rules(tmp_path, "[region\n")


def test_a_node_takes_a_run_of_its_pool_whose_labels_it_has() -> None:
    assert placement.may_take("big", {"region": "eu", "x": "1"}, "big", {"region": "eu"})
    assert not placement.may_take("big", {"region": "us"}, "big", {"region": "eu"})
    assert not placement.may_take("default", {"region": "eu"}, "big", {"region": "eu"})
    assert not placement.may_take(None, {}, "default", {})


def test_the_reason_says_what_the_run_needs_and_who_is_there() -> None:
    live = [
        unplaced.Live("ctl-a", "controller", "default", {}),
        unplaced.Live("w1", "worker", "default", {}),
        unplaced.Live("w2", "worker", "big", {"region": "us"}),
    ]
    assert unplaced.takers("big", {"region": "eu"}, live) == []
    assert unplaced.reason("big", {"region": "eu"}, live) == (
        "no worker can take it: it needs pool 'big' with labels region=eu; live workers:"
        " ctl-a (controller, pool default), w1 (pool default), w2 (pool big, region=us)"
    )
    assert unplaced.reason("big", {}, []).endswith("it needs pool 'big'; live workers: none")
