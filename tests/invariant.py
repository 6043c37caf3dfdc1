"""SPEC section 9: for every device, the hub's count equals the journal's ``last_seq``, and every
event is stored exactly once (the check itself is :mod:`simulators.invariant`)."""

from __future__ import annotations

from simulators.hall import Hall, wait_for
from simulators.invariant import events_by_device, section9

__all__ = ["assert_invariant", "events_by_device"]


def assert_invariant(hall: Hall, devices: list[str], timeout: float = 60) -> None:
    """Wait until the hub caught up, then check counts and exactly-once storage per device."""
    journals = {d: hall.journal(d) for d in devices}
    wait_for(
        lambda: all(events_by_device(hall).get(d, 0) >= journals[d]["last_seq"] for d in devices),
        timeout,
        "the hub to store every journaled event",
    )
    verdict = section9(hall, journals)
    assert not verdict.problems, verdict.problems
