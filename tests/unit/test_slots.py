"""Run slots (controller/slots.py): the default from the machine, weights, the fair order."""

import pytest

from dockyard.controller import slots
from dockyard.controller.slots import Waiting

GIB = slots.GIB


@pytest.mark.parametrize(
    ("cores", "memory", "expected"),
    [
        (2, 24 * GIB, 4),  # two per core
        (16, 4 * GIB, 4),  # at most one per GiB
        (1, GIB // 2, 1),  # at least one
        (4, 0, 8),  # memory unknown: cores only
    ],
)
def test_the_default_is_two_per_core_at_most_one_per_gib(
    cores: int, memory: int, expected: int
) -> None:
    assert slots.default_slots(cores, memory) == expected


def test_weights_parse_and_a_bad_pair_names_itself() -> None:
    assert slots.parse_weights(" large=2, xlarge=4 ,") == {"large": 2, "xlarge": 4}
    assert slots.parse_weights("") == {}
    for bad in ("large", "large=0", "=2", "large=two"):
        with pytest.raises(ValueError, match="SIZE=N"):
            slots.parse_weights(bad)


def test_a_run_weighs_its_instance_size_capped_at_the_host() -> None:
    weights = {"large": 2, "huge": 16}
    large = {"require": {"instance": {"size": "large"}}}
    assert slots.weight(large, weights, 4) == 2
    assert slots.weight({"require": {"instance": {"size": "huge"}}}, weights, 4) == 4
    assert slots.weight({"require": {"instance": {"size": "tiny"}}}, weights, 4) == 1
    assert slots.weight({"require": {}}, weights, 4) == 1
    assert slots.weight(large, {}, 4) == 1


def test_workspaces_take_turns_oldest_first() -> None:
    # workspace 1 fired 4 runs before workspace 2's one and workspace 3's two
    waiting = [Waiting("a1", 1), Waiting("a2", 1), Waiting("b1", 2), Waiting("a3", 1)]
    waiting += [Waiting("c1", 3), Waiting("a4", 1), Waiting("c2", 3)]
    assert slots.pick(waiting, 3) == ["a1", "b1", "c1"]
    assert slots.pick(waiting, 5) == ["a1", "b1", "c1", "a2", "c2"]
    assert slots.pick(waiting, 0) == []


def test_a_run_that_does_not_fit_waits_and_nothing_overtakes_it() -> None:
    waiting = [Waiting("small", 1), Waiting("big", 1, weight=3), Waiting("later", 1)]
    assert slots.pick(waiting, 3) == ["small"]
    assert slots.pick(waiting, 4) == ["small", "big"]


def test_the_waiting_text_says_how_many_slots_are_in_use() -> None:
    assert slots.waiting_text(2, 2) == "waiting for a run slot: 2 of 2 in use"
