"""Micro-batching: collect messages until ``max_records`` OR ``max_wait`` has passed, whichever is first.

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
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        if max_wait_s <= 0:
            raise ValueError("max_wait_s must be positive")
        self.source = source
        self.max_records = max_records
        self.max_wait_s = max_wait_s
        self.clock = clock

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
            batch.extend(self.source.consume(num_messages=self.max_records - len(batch), timeout=remaining))
        return batch
