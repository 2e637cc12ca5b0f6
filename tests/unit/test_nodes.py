"""The pure rules of nodes: when a node is lost, what its runs' reason says, when a start may
take a name over without watching its heartbeat, which names are valid."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from dockyard.controller import nodes
from dockyard.errors import InvalidInput

T0 = datetime(2026, 5, 1, 12, 0, 5, tzinfo=UTC)
ME = nodes.Identity("a", host="box", pid=100)


def test_a_node_is_lost_after_three_missed_heartbeats() -> None:
    assert timedelta(seconds=15) == nodes.LOST_AFTER
    assert not nodes.is_lost(T0, T0 + timedelta(seconds=14.9))
    assert nodes.is_lost(T0, T0 + timedelta(seconds=15))
    assert nodes.state(nodes.UP, T0, T0 + timedelta(seconds=5)) == "alive"
    assert nodes.state(nodes.UP, T0, T0 + timedelta(seconds=16)) == "lost"
    assert nodes.state(nodes.STOPPED, T0, T0 + timedelta(seconds=1)) == "stopped"


def test_the_reason_names_the_kind_the_node_and_its_last_heartbeat_in_utc() -> None:
    assert (
        nodes.lost_reason("controller", "a", T0)
        == "controller a lost (last heartbeat 12:00:05 UTC)"
    )
    other_zone = T0.astimezone(timezone(timedelta(hours=2)))
    assert (
        nodes.lost_reason("worker", "w1", other_zone)
        == "worker w1 lost (last heartbeat 12:00:05 UTC)"
    )
    assert nodes.lost_reason("controller", "a", T0, nodes.STOPPED).startswith(
        "controller a stopped"
    )


def seen(
    host: str = "box", pid: int = 200, state: str = nodes.UP, age_s: float = 1.0
) -> nodes.Seen:
    return nodes.Seen(host, pid, state, 3, T0 - timedelta(seconds=age_s))


def test_a_name_is_taken_over_at_once_only_when_its_holder_is_surely_gone() -> None:
    assert nodes.may_take_over(seen(age_s=20), ME, T0, pid_alive=True)  # lost
    assert nodes.may_take_over(seen(state=nodes.STOPPED), ME, T0, pid_alive=True)  # clean stop
    assert nodes.may_take_over(seen(), ME, T0, pid_alive=False)  # this host, process gone
    assert nodes.may_take_over(seen(pid=100), ME, T0, pid_alive=True)  # this very process number
    assert not nodes.may_take_over(seen(), ME, T0, pid_alive=True)  # this host, alive
    assert not nodes.may_take_over(seen(host="other"), ME, T0, pid_alive=False)  # can't tell


@pytest.mark.parametrize("name", ["a", "ctl-1.example_2", "x" * 64])
def test_valid_names(name: str) -> None:
    assert nodes.check_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a b", "x" * 65, "a/b", "é"])
def test_invalid_names_say_what_to_set(name: str) -> None:
    with pytest.raises(InvalidInput, match="DOCKYARD_NODE_NAME"):
        nodes.check_name(name)


def test_a_node_judges_others_only_after_heartbeating_continuously_for_lost_after() -> None:
    lost_s = nodes.LOST_AFTER.total_seconds()
    assert not nodes.may_judge(None, 100.0)  # never heartbeated (or the database is away)
    since = nodes.connected_since(None, None, 100.0)  # the first beat (a start, a reconnect)
    assert since == 100.0
    assert not nodes.may_judge(since, 100.0 + lost_s - 0.1)
    for beat in (105.0, 110.0, 115.0):  # beats every 5 s keep the window going
        since = nodes.connected_since(since, beat - 5.0, beat)
    assert since == 100.0
    assert nodes.may_judge(since, 115.0)


def test_a_gap_as_long_as_lost_after_between_beats_starts_the_window_again() -> None:
    lost_s = nodes.LOST_AFTER.total_seconds()
    # a beat, then the database away for 20 s (no beat), then a beat: others' heartbeats are
    # as old as ours, so nobody is judged for another LOST_AFTER
    since = nodes.connected_since(100.0, 195.0, 195.0 + lost_s + 5.0)
    assert since == 195.0 + lost_s + 5.0
    assert not nodes.may_judge(since, since + 1.0)
    assert nodes.connected_since(100.0, 195.0, 195.0 + lost_s - 0.1) == 100.0
