"""The token bucket behind ``--rate``, in simulated time."""

from __future__ import annotations

import pytest

from producer.publisher import TokenBucket


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_is_held_over_many_records() -> None:
    clock = FakeClock()
    bucket = TokenBucket(50, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        bucket.acquire()
    elapsed = clock.now - 1000.0
    # 1000 records at 50/s take 20 s, less the initial burst of 5 that was already saved up.
    assert elapsed == pytest.approx((1000 - bucket.burst) / 50, rel=1e-6)


def test_initial_burst_is_free_then_paced() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        assert bucket.acquire() == 0.0
    assert clock.sleeps == []
    assert bucket.acquire() == pytest.approx(0.1)
    assert clock.now - 1000.0 == pytest.approx(0.1)


def test_idle_time_refills_only_up_to_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=2, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    bucket.acquire()
    clock.now += 60  # a minute idle saves up at most `burst` tokens
    assert bucket.try_acquire() and bucket.try_acquire()
    assert not bucket.try_acquire()


def test_fractional_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0.5, clock=clock, sleep=clock.sleep)  # one record every two seconds
    bucket.acquire()
    bucket.acquire()
    assert clock.now - 1000.0 == pytest.approx(2.0)


@pytest.mark.parametrize("rate", [0, -1])
def test_rejects_non_positive_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(rate)


def test_rejects_more_tokens_than_burst() -> None:
    with pytest.raises(ValueError, match="cannot take"):
        TokenBucket(10, burst=2).acquire(3)
