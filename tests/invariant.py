"""SPEC section 9: for every device, the hub's count equals the journal's ``last_seq``, and every
event is stored exactly once."""

from __future__ import annotations

from simulators.hall import Hall, wait_for


def events_by_device(hall: Hall) -> dict[str, int]:
    return {row["device"]: row["events"] for row in hall.stats(("device",))["rows"]}


def assert_invariant(hall: Hall, devices: list[str], timeout: float = 60) -> None:
    """Wait until the hub caught up, then check counts and exactly-once storage per device."""
    journals = {d: hall.journal(d) for d in devices}
    wait_for(
        lambda: all(events_by_device(hall).get(d, 0) >= journals[d]["last_seq"] for d in devices),
        timeout,
        "the hub to store every journaled event",
    )
    counted = events_by_device(hall)
    for device in devices:
        journal = journals[device]
        seqs = hall.stored_seqs(device)
        assert counted.get(device, 0) == journal["last_seq"], (device, counted, journal)
        assert seqs == [(journal["epoch"], n) for n in range(1, journal["last_seq"] + 1)], device
