"""The sweeper's pure parts: the jittered interval, what is swept, the round robin over links,
the synthetic delivery's id, and the pkt-line reading of a ref advertisement."""

import random

import pytest

from dockyard.errors import InvalidInput, Unavailable
from dockyard.webhooks import heads, receiver, sweeper
from dockyard.webhooks.sweeper import decide

HEAD, OLD = "a" * 40, "b" * 40


def test_jitter_stays_within_twenty_percent_and_uses_the_range() -> None:
    rng = random.Random(12)
    draws = [sweeper.jittered(60.0, rng) for _ in range(5000)]
    assert all(48.0 <= d <= 72.0 for d in draws)
    assert min(draws) < 49.0 and max(draws) > 71.0  # spread over the range, not a constant
    assert len({round(d, 6) for d in draws}) > 4000


def test_a_new_head_is_swept_when_nothing_waits_and_it_was_not_tried() -> None:
    assert decide(HEAD, OLD, busy=False, attempted=False)
    assert decide(HEAD, None, busy=False, attempted=False)  # a link never processed yet


@pytest.mark.parametrize(
    ("last", "busy", "attempted"),
    [
        (HEAD, False, False),  # already processed
        (OLD, True, False),  # a delivery waits: it fetches the head anyway
        (OLD, False, True),  # tried once (it failed): not every minute forever
        (HEAD, True, True),
    ],
)
def test_nothing_is_swept_otherwise(last: str, busy: bool, attempted: bool) -> None:
    assert not decide(HEAD, last, busy=busy, attempted=attempted)


def test_links_are_asked_round_robin_from_where_the_last_pass_stopped() -> None:
    assert sweeper.rotate([3, 1, 2], after=0) == [1, 2, 3]
    assert sweeper.rotate([1, 2, 3], after=2) == [3, 1, 2]
    assert sweeper.rotate([1, 2, 3], after=3) == [1, 2, 3]
    assert sweeper.rotate([5, 9], after=7) == [9, 5]  # link 7 was unlinked meanwhile
    assert sweeper.rotate([], after=4) == []


def test_the_sweep_delivery_id_is_one_per_link_and_head_and_fits_the_table() -> None:
    ident = sweeper.delivery_id(123456, HEAD)
    assert ident == f"sweep-123456-{HEAD}"
    assert sweeper.delivery_id(123456, HEAD) == ident != sweeper.delivery_id(123456, OLD)
    assert receiver.DELIVERY_ID.fullmatch(ident)  # the same shape a webhook's id may have


def pkt(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


ADVERTISEMENT = (
    pkt("# service=git-upload-pack\n")
    + b"0000"
    + pkt(f"{OLD} HEAD\0multi_ack side-band-64k symref=HEAD:refs/heads/main\n")
    + pkt(f"{OLD} refs/heads/feature\n")
    + pkt(f"{HEAD} refs/heads/main\n")
    + pkt(f"{OLD} refs/pull/1/head\n")
    + b"0000"
)


def test_the_branch_line_is_found_whatever_the_chunking() -> None:
    for size in (1, 3, 7, len(ADVERTISEMENT)):
        chunks = iter(ADVERTISEMENT[i : i + size] for i in range(0, len(ADVERTISEMENT), size))
        assert heads._find(chunks, "refs/heads/main", float("inf"), "host") == HEAD
        chunks = iter(ADVERTISEMENT[i : i + size] for i in range(0, len(ADVERTISEMENT), size))
        assert heads._find(chunks, "refs/heads/feature", float("inf"), "host") == OLD


def test_a_missing_branch_is_said_once_the_list_ends() -> None:
    with pytest.raises(InvalidInput, match="has no branch 'gone'"):
        heads._find(iter([ADVERTISEMENT]), "refs/heads/gone", float("inf"), "host")


def test_the_first_line_names_a_ref_before_its_capabilities() -> None:
    line = f"{HEAD} refs/heads/main\0side-band-64k refs/heads/other\n".encode()
    assert heads.match(line, "refs/heads/main") == HEAD
    assert heads.match(line, "refs/heads/other") is None


@pytest.mark.parametrize(
    "line",
    [
        f"{HEAD[:39]} refs/heads/main\n",  # short
        f"{HEAD.upper()} refs/heads/main\n",  # not git's lower-case hex
        f"{HEAD} refs/heads/main-not\n",
        f"{HEAD} refs/heads/main extra\n",
        f"{HEAD}\trefs/heads/main\n",  # the dumb protocol's form
    ],
)
def test_malformed_lines_are_not_believed(line: str) -> None:
    assert heads.match(line.encode(), "refs/heads/main") is None


@pytest.mark.parametrize("data", [b"zzzz", b"0002", b"fff1" + b"x" * 10])
def test_a_malformed_length_stops_the_read(data: bytes) -> None:
    with pytest.raises(Unavailable):
        heads.PktLines().feed(data)


def test_an_endless_list_stops_at_the_cap_and_a_late_host_at_the_deadline() -> None:
    filler = pkt(f"{OLD} refs/heads/{'x' * 200}\n")
    endless = iter([pkt("# service=git-upload-pack\n") + b"0000", *[filler] * 40_000])
    with pytest.raises(Unavailable, match="bytes of refs"):
        heads._find(endless, "refs/heads/main", float("inf"), "host")
    with pytest.raises(Unavailable, match="too long"):
        heads._find(iter([ADVERTISEMENT]), "refs/heads/main", 0.0, "host")
