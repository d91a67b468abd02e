"""Micro-batching: collect messages until ``max_records`` OR ``max_wait`` has passed, whichever is first.
Optionally (``idle_close_s``) close early once the local queue runs dry: under light load a review then does not
wait out the whole window.

:class:`AdaptiveBatcher` (the service's default) sizes each batch from what the last ones cost and a p99 latency
target instead: a batch holds what the target allows (a review may wait for the batch in progress and then for its
own, so each gets half the target), waits for more only while the budget has time left and more keeps coming
(a short probe that finds nothing closes the batch), and grows (up to ``deep_max_records``) while the queue stays
deeper than a batch, which clears a backlog with fewer, cheaper-per-review batches; never past what ``max_batch_s``
allows at the current cost per review (the batch in hand must end within the drain bound).

The clock and the source are injected so tests are deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Message

Clock = Callable[[], float]


class MessageSource(Protocol):
    """What the batcher needs of a Kafka consumer (``confluent_kafka.Consumer.consume``)."""

    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Message]: ...


class MicroBatcher:
    def __init__(
        self,
        source: MessageSource,
        max_records: int,
        max_wait_s: float,
        clock: Clock = time.monotonic,
        idle_close_s: float | None = None,
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        if max_wait_s <= 0:
            raise ValueError("max_wait_s must be positive")
        self.source = source
        self.max_records = max_records
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.idle_close_s = idle_close_s

    def next_batch(self) -> list[Message]:
        """Block at most ``max_wait_s``; return up to ``max_records`` messages (maybe none).

        The wait starts at the first call, not the first message, so an idle worker still returns to its
        loop regularly (signals, health, rebalances).
        """
        deadline = self.clock() + self.max_wait_s
        batch: list[Message] = []
        while len(batch) < self.max_records:
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            idle = self.idle_close_s if batch else None  # the short probe applies once something is here
            timeout = remaining if idle is None else min(remaining, idle)
            got = self.source.consume(num_messages=self.max_records - len(batch), timeout=timeout)
            if idle is not None and not got:
                break  # the queue ran dry: process what is here rather than wait out the window
            batch.extend(got)
        return batch

    def observe(self, records: int, seconds: float) -> None:
        """What a batch of ``records`` cost to process and commit (a fixed-size batcher ignores it)."""


@dataclass(frozen=True)
class AdaptivePolicy:
    """The bounds an :class:`AdaptiveBatcher` works within."""

    latency_target_s: float  # the p99 a review should see, from arrival to its batch committed
    max_records: int  # the largest batch while the queue is shallow
    deep_max_records: int  # the largest batch while the queue stays deeper than a batch
    max_wait_s: float  # the longest wait for a batch (an idle worker still returns to its loop this often)
    # The longest a batch may take to process at the current cost: the batch in hand when a stop comes must end within
    # the drain bound, however slow the model (None: no bound of time).
    max_batch_s: float | None = None

    def __post_init__(self) -> None:
        if self.latency_target_s <= 0 or self.max_wait_s <= 0:
            raise ValueError("latency_target_s and max_wait_s must be positive")
        if not 1 <= self.max_records <= self.deep_max_records:
            raise ValueError("need 1 <= max_records <= deep_max_records")


class AdaptiveBatcher(MicroBatcher):
    # Weight of the newest batch in the per-review cost estimate.
    SMOOTHING = 0.3
    # Once a batch has begun, how long one look at the queue waits for more.
    PROBE_S = 0.005

    def __init__(self, source: MessageSource, policy: AdaptivePolicy, clock: Clock = time.monotonic) -> None:
        super().__init__(source, policy.max_records, policy.max_wait_s, clock)
        self.policy = policy
        self.per_record_s: float | None = None  # smoothed seconds per review of the last batches
        self.cap = policy.max_records
        self.deep = False

    def observe(self, records: int, seconds: float) -> None:
        if records < 1 or seconds < 0:
            return
        cost = seconds / records
        self.per_record_s = cost if self.per_record_s is None else \
            self.SMOOTHING * cost + (1 - self.SMOOTHING) * self.per_record_s

    def plan(self) -> tuple[int, float]:
        """(the most records of the next batch, how long to wait for more once one is here)."""
        p = self.policy
        budget = p.latency_target_s / 2
        if self.per_record_s is None:
            return p.max_records, p.max_wait_s
        fits = max(1, min(p.max_records, int(budget / self.per_record_s)))
        cap = min(p.deep_max_records, max(2 * self.cap, fits)) if self.deep else fits
        if p.max_batch_s is not None:
            cap = max(1, min(cap, int(p.max_batch_s / self.per_record_s)))
        linger = min(p.max_wait_s, max(0.0, budget - self.per_record_s * cap))
        return cap, linger

    def next_batch(self) -> list[Message]:
        cap, linger = self.plan()
        self.cap = cap
        batch: list[Message] = []
        idle_deadline = self.clock() + self.policy.max_wait_s
        close_at = idle_deadline
        while len(batch) < cap:
            if not batch:
                remaining = idle_deadline - self.clock()
                if remaining <= 0:
                    break
                # One message ends the idle wait at once; what else is queued is taken right after.
                got = self.source.consume(num_messages=1, timeout=remaining)
                if got:
                    close_at = self.clock() + linger
            else:
                remaining = close_at - self.clock()
                wanted = cap - len(batch)
                # Short probes: a broker that hands the backlog over in chunks keeps the batch growing, and a probe
                # that finds nothing closes it (waiting on would only add latency).
                got = self.source.consume(num_messages=wanted, timeout=max(0.0, min(remaining, self.PROBE_S)))
                if len(got) < wanted and (remaining <= 0 or not got):
                    batch.extend(got)
                    break  # the queue ran dry, or the budget has no time left to gather more
            batch.extend(got)
        self.deep = len(batch) >= cap
        return batch
