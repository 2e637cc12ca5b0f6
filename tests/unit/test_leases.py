"""The lease decisions (pure) and what a loop believes it holds, with a fake clock; the
guarded statements themselves are tested on a real database (tests/integration)."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dockyard.clock import FakeClock
from dockyard.controller import leases
from dockyard.controller.leases import Seen, decide

START = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
ME, OTHER = "host-a:1:aa", "host-b:2:bb"


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def test_a_missing_row_is_inserted() -> None:
    assert decide(None, ME, None, START) == "insert"


def test_ones_own_lease_is_renewed_at_the_same_epoch_even_past_its_expiry() -> None:
    mine = Seen(ME, 4, at(10))
    assert decide(mine, ME, 4, at(5)) == "renew"
    assert decide(mine, ME, 4, at(11)) == "renew"  # nobody took it: the epoch is unchanged


def test_a_lease_held_by_another_is_waited_for_until_it_expires() -> None:
    theirs = Seen(OTHER, 7, at(10))
    assert decide(theirs, ME, None, at(9.9)) == "wait"
    assert decide(theirs, ME, None, at(10)) == "take"


def test_a_released_lease_is_taken_at_once() -> None:
    assert decide(Seen(None, 3, at(10)), ME, None, START) == "take"


def test_the_same_holder_with_another_epoch_is_not_a_renewal() -> None:
    """A process that lost epoch 4 and believes it still holds it must not renew epoch 5
    (its own name never changes within a process: only the epoch tells)."""
    assert decide(Seen(ME, 5, at(10)), ME, 4, at(1)) == "wait"
    assert decide(Seen(ME, 5, at(10)), ME, 4, at(10)) == "take"


def test_holder_identity_is_new_at_every_start_and_names_host_and_pid() -> None:
    one, two = leases.holder_identity(), leases.holder_identity()
    assert one != two
    host, pid, tail = one.rsplit(":", 2)
    assert host and pid.isdigit() and len(tail) == 8
    assert len(one) <= 255


@dataclass
class FakeLeases:
    """Stands in for `Leases`: answers `hold` from a script."""

    clock: FakeClock
    answers: list[int | None]
    ttl_s: float = 10.0
    holder: str = ME
    asked: list[int | None] = field(default_factory=list)
    released: list[int] = field(default_factory=list)

    def hold(self, name: str, mine: int | None) -> int | None:
        self.asked.append(mine)
        return self.answers.pop(0)

    def release(self, name: str, epoch: int) -> bool:
        self.released.append(epoch)
        return True


def guard(clock: FakeClock, *answers: int | None) -> tuple[leases.Guard, FakeLeases]:
    fake = FakeLeases(clock, list(answers))
    return leases.Guard(fake, "sweep"), fake  # type: ignore[arg-type]


def test_a_loop_believes_it_holds_the_lease_for_one_ttl_after_the_renewal_was_asked() -> None:
    clock = FakeClock(START)
    lease, _ = guard(clock, 3)
    assert lease.held() is None
    lease.refresh()
    fence = lease.held()
    assert fence is not None and (fence.name, fence.epoch) == ("sweep", 3)
    clock.advance(9.9)
    assert lease.held() is not None
    clock.advance(0.1)
    assert lease.held() is None  # not renewed for a TTL: skip the work


def test_a_renewal_asks_with_the_epoch_held_and_a_refusal_drops_it() -> None:
    clock = FakeClock(START)
    lease, fake = guard(clock, 3, 3, None, 5)
    for _ in range(4):
        lease.refresh()
    assert fake.asked == [None, 3, 3, None]
    fence = lease.held()
    assert fence is not None and fence.epoch == 5


def test_taking_the_lease_over_wakes_the_loop_but_a_renewal_does_not() -> None:
    clock = FakeClock(START)
    lease, _ = guard(clock, 1, 1, None, 2)
    woken: list[str] = []
    lease.on_acquired(lambda: woken.append("wake"))
    lease.refresh(notify=False)  # at start-up: the loop has not started yet
    lease.refresh()
    assert woken == []
    lease.refresh()
    lease.refresh()
    assert woken == ["wake"]


def test_release_gives_up_the_epoch_held_and_forgets_it() -> None:
    clock = FakeClock(START)
    lease, fake = guard(clock, 6)
    lease.refresh()
    lease.release()
    assert fake.released == [6]
    assert lease.held() is None
    lease.release()  # nothing held: nothing asked
    assert fake.released == [6]
