"""The micro-batcher closes a batch on max records OR max wait, measured on an injected clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from consumer.batcher import MicroBatcher


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedSource:
    """Each consume() returns the next scripted chunk (capped at num_messages) and advances the clock."""

    clock: FakeClock
    chunks: list[list[int]]
    step_s: float = 0.05
    calls: list[tuple[int, float]] = field(default_factory=list)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[int]:
        self.calls.append((num_messages, timeout))
        self.clock.now += min(self.step_s, timeout)
        if not self.chunks:
            return []
        chunk = self.chunks.pop(0)
        taken, rest = chunk[:num_messages], chunk[num_messages:]
        if rest:
            self.chunks.insert(0, rest)
        return taken


def test_batch_closes_at_max_records() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [[1, 2, 3], [4, 5, 6], [7]])
    batcher = MicroBatcher(source, max_records=5, max_wait_s=10.0, clock=clock)  # type: ignore[arg-type]
    batch: list[Any] = batcher.next_batch()
    assert batch == [1, 2, 3, 4, 5]
    # Never asks for more than what is left to fill the batch.
    assert [n for n, _ in source.calls] == [5, 2]
    assert batcher.next_batch() == [6, 7]  # type: ignore[comparison-overlap]


def test_batch_closes_at_max_wait_with_what_it_has() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [[1], [], [2], [], [], [], []], step_s=0.1)
    batcher = MicroBatcher(source, max_records=100, max_wait_s=0.35, clock=clock,  # type: ignore[arg-type]
                           idle_close_s=None)
    batch: list[Any] = batcher.next_batch()
    assert batch == [1, 2]
    assert clock.now == pytest.approx(0.35)
    # Each wait is bounded by the time left, so the batch never overruns its deadline.
    assert all(timeout <= 0.35 + 1e-9 for _, timeout in source.calls)
    assert source.calls[-1][1] == pytest.approx(0.05)


def test_batch_closes_early_when_the_queue_runs_dry() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [[], [1, 2], [3], [], [4]], step_s=0.1)
    batcher = MicroBatcher(source, max_records=100, max_wait_s=1.0, clock=clock,  # type: ignore[arg-type]
                           idle_close_s=0.02)
    batch: list[Any] = batcher.next_batch()
    assert batch == [1, 2, 3]
    # Before the first message the wait is the whole window; after it, only the short idle probe.
    assert [t for _, t in source.calls] == [pytest.approx(1.0), pytest.approx(0.9), 0.02, 0.02]
    assert clock.now == pytest.approx(0.24)


def test_idle_source_returns_an_empty_batch_after_max_wait() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [], step_s=1.0)
    batcher = MicroBatcher(source, max_records=10, max_wait_s=0.2, clock=clock)  # type: ignore[arg-type]
    batch: list[Any] = batcher.next_batch()
    assert batch == []
    assert clock.now == pytest.approx(0.2)


@pytest.mark.parametrize(("records", "wait"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_invalid_limits_are_rejected(records: int, wait: float) -> None:
    with pytest.raises(ValueError):
        MicroBatcher(ScriptedSource(FakeClock(), []), max_records=records, max_wait_s=wait)  # type: ignore[arg-type]


# The adaptive batcher: sizes and waits from what batches cost and the p99 target.

from consumer.batcher import AdaptiveBatcher, AdaptivePolicy  # noqa: E402


def _policy(target_s: float = 1.0, max_records: int = 256, deep: int = 1024, wait_s: float = 0.05) -> AdaptivePolicy:
    return AdaptivePolicy(latency_target_s=target_s, max_records=max_records, deep_max_records=deep,
                          max_wait_s=wait_s)


def test_adaptive_batch_holds_what_half_the_target_allows_and_closes_when_the_queue_runs_dry() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [list(range(300))], step_s=0.01)
    batcher = AdaptiveBatcher(source, _policy(), clock)  # type: ignore[arg-type]
    batcher.observe(100, 0.5)  # 5 ms a review: 0.5 s of budget holds 100
    assert batcher.plan() == (100, 0.0)  # and leaves no time to wait for more
    batch: list[Any] = batcher.next_batch()
    assert batch == list(range(100))
    # The first message ends the idle wait; the rest is taken without waiting.
    assert source.calls[0][0] == 1 and source.calls[0][1] == pytest.approx(0.05) and source.calls[1] == (99, 0.0)


def test_adaptive_batch_waits_for_more_only_while_the_budget_has_time() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [[1], [2, 3], [], [], [], []], step_s=0.01)
    batcher = AdaptiveBatcher(source, _policy(wait_s=0.03), clock)  # type: ignore[arg-type]
    batcher.observe(1000, 0.1)  # 0.1 ms a review: a full batch takes 26 ms of the 500 ms budget
    cap, linger = batcher.plan()
    assert cap == 256 and linger == pytest.approx(0.03)  # the wait bound, not the budget's whole rest
    batch: list[Any] = batcher.next_batch()
    assert batch == [1, 2, 3]
    # Each look waits a short probe; the first that finds nothing closes the batch, well before the wait bound.
    assert [t for _, t in source.calls[1:]] == [0.005, 0.005]
    assert clock.now == pytest.approx(0.01 + 0.005 + 0.005)


def test_adaptive_batch_keeps_gathering_while_more_arrives_until_the_wait_runs_out() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [[i] for i in range(20)], step_s=0.004)
    batcher = AdaptiveBatcher(source, _policy(wait_s=0.03), clock)  # type: ignore[arg-type]
    batcher.observe(1000, 0.1)
    batch: list[Any] = batcher.next_batch()
    # The first message at 4 ms, then one per probe until 30 ms after the first, and what is queued at that moment.
    assert batch == list(range(10))
    assert clock.now == pytest.approx(0.004 + 0.03)


def test_adaptive_batch_grows_while_the_queue_is_deep_and_shrinks_after() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [list(range(2000))], step_s=0.001)
    batcher = AdaptiveBatcher(source, _policy(deep=512), clock)  # type: ignore[arg-type]
    batcher.observe(100, 0.5)
    sizes = []
    for _ in range(5):
        sizes.append(len(batcher.next_batch()))
    assert sizes == [100, 200, 400, 512, 512]  # doubling while each batch fills, up to the deep bound
    source.chunks = [list(range(30))]
    assert len(batcher.next_batch()) == 30  # the backlog is gone
    assert batcher.plan()[0] == 100 and not batcher.deep


def test_adaptive_batch_never_grows_past_the_time_a_batch_may_take() -> None:
    # A slow model (25 ms a review) and a deep queue: growing would make the batch in hand outlast the drain bound.
    clock = FakeClock()
    source = ScriptedSource(clock, [list(range(5000))], step_s=0.001)
    policy = AdaptivePolicy(latency_target_s=1.0, max_records=64, deep_max_records=1024, max_wait_s=0.05,
                            max_batch_s=5.0)
    batcher = AdaptiveBatcher(source, policy, clock)  # type: ignore[arg-type]
    batcher.observe(64, 64 * 0.025)
    sizes = [len(batcher.next_batch()) for _ in range(5)]
    assert sizes == [20, 40, 80, 160, 200]  # half the 1 s target holds 20; doubling stops at 5 s ÷ 25 ms
    assert batcher.plan()[0] * 0.025 <= 5.0


def test_adaptive_batcher_without_a_cost_yet_uses_the_fixed_bounds_and_idles_out() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [], step_s=1.0)
    batcher = AdaptiveBatcher(source, _policy(wait_s=0.2), clock)  # type: ignore[arg-type]
    assert batcher.plan() == (256, 0.2)
    assert batcher.next_batch() == []  # type: ignore[comparison-overlap]
    assert clock.now == pytest.approx(0.2)


def test_adaptive_cost_follows_recent_batches() -> None:
    batcher = AdaptiveBatcher(ScriptedSource(FakeClock(), []), _policy())  # type: ignore[arg-type]
    batcher.observe(10, 0.1)
    for _ in range(20):
        batcher.observe(100, 0.1)  # the model got faster (or the machine quieter)
    assert batcher.per_record_s == pytest.approx(0.001, rel=0.01)
    assert batcher.plan()[0] == 256


@pytest.mark.parametrize(("target", "records", "deep"), [(0.0, 1, 1), (1.0, 0, 1), (1.0, 10, 5)])
def test_invalid_adaptive_bounds_are_rejected(target: float, records: int, deep: int) -> None:
    with pytest.raises(ValueError):
        AdaptivePolicy(latency_target_s=target, max_records=records, deep_max_records=deep, max_wait_s=0.05)
