"""The adaptive batch linger (core.pull.Linger): no wait at a low rate, the full wait from
the configured rate on, and back to none when the traffic stops."""

from __future__ import annotations

from core.pull import Linger


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(linger: Linger, clock: Clock, per_second: int, seconds: float) -> None:
    """``per_second`` arrivals, one at a time, evenly over ``seconds``."""
    step = 1.0 / per_second
    for _ in range(int(per_second * seconds)):
        clock.now += step
        linger.note(1)


def test_low_rate_does_not_wait_high_rate_does() -> None:
    clock = Clock()
    linger = Linger(0.02, from_rate=150, clock=clock)
    feed(linger, clock, 100, 2.0)
    assert 80 <= linger.rate() <= 120
    assert linger.seconds() == 0.0
    feed(linger, clock, 400, 2.0)
    assert linger.rate() >= 300
    assert linger.seconds() == 0.02


def test_rate_decays_when_traffic_stops() -> None:
    clock = Clock()
    linger = Linger(0.02, from_rate=150, clock=clock)
    feed(linger, clock, 1000, 1.0)
    assert linger.seconds() == 0.02
    clock.now += 2 * Linger.WINDOW_S  # nothing arrived for a while
    assert linger.rate() == 0.0
    linger.note(1)  # the first message after the pause is handled at once
    assert linger.seconds() == 0.0


def test_batches_count_like_single_messages() -> None:
    clock = Clock()
    linger = Linger(0.02, from_rate=150, clock=clock)
    for _ in range(8):  # 50 messages every 0.25 s = 200 per second
        clock.now += 0.25
        linger.note(50)
    assert 150 <= linger.rate() <= 250
    assert linger.seconds() == 0.02


def test_fixed_linger_without_a_rate() -> None:
    clock = Clock()
    assert Linger(0.02, from_rate=0, clock=clock).seconds() == 0.02
    assert Linger(0.0, from_rate=150, clock=clock).seconds() == 0.0
