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
