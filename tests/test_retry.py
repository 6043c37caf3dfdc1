"""The one retry helper (protocol.retry.Backoff): doubling steps, capped, jitter within a step."""

from __future__ import annotations

import random

from protocol.retry import Backoff


def test_steps_double_up_to_the_cap_and_start_again_after_a_success() -> None:
    backoff = Backoff(0.5, 5.0)
    assert [backoff.failed() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.failures == 6
    backoff.succeeded()
    assert backoff.failed() == 0.5


def test_jitter_waits_between_half_a_step_and_a_whole_one() -> None:
    backoff = Backoff(1.0, 30.0, jitter=True, rng=random.Random(3))
    for step in (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0):
        assert step / 2 <= backoff.failed() <= step


def test_a_long_outage_never_overflows() -> None:
    backoff = Backoff(0.02, 30.0, failures=10_000)
    assert backoff.failed() == 30.0
