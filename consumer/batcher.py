"""Micro-batching: collect messages until ``max_records`` OR ``max_wait`` has passed, whichever is first.
Optionally (``idle_close_s``, off by default as in the service's settings) close early once the local queue
runs dry: under light load a review then does not wait out the whole window.

The clock and the source are injected so tests are deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
