"""Rebalances in the middle of a batch: what the worker keeps, drops, pauses and rewinds (fake client)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from consumer.metrics import WorkerMetrics
from consumer.worker import Worker, WorkerOptions


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"v"


@dataclass
class ScriptedConsumer:
    """consume() and poll() run the next scripted step: a list of messages, or a callback (a rebalance)."""

    steps: list[list[FakeMessage] | Callable[[], None]] = field(default_factory=list)
    committed_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    seeks: list[tuple[int, int]] = field(default_factory=list)
    paused: list[int] = field(default_factory=list)
    polls: int = 0

    def _step(self) -> list[FakeMessage]:
        while self.steps:
            step = self.steps.pop(0)
            if callable(step):
                step()
                continue
            return step
        return []

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        return self._step()

    def poll(self, timeout: float) -> FakeMessage | None:
        self.polls += 1
        got = self._step()
        return got[0] if got else None

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        return [TopicPartition(p.topic, p.partition, self.committed_offsets.get((p.topic, p.partition), -1001))
                for p in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused.extend(p.partition for p in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        pass


def _worker(consumer: ScriptedConsumer) -> Worker:
    worker = Worker(consumer, None, None, WorkerMetrics.create(CollectorRegistry()),  # type: ignore[arg-type]
                    WorkerOptions("in", 100, 0.05, 5.0))
    worker._on_assign(consumer, [TopicPartition("in", 0), TopicPartition("in", 1)])  # type: ignore[arg-type]
    worker.unchecked.clear()  # as if checked (tests/unit/test_consumer_integrity.py covers the checks)
    return worker


def _revoke_and_reassign(worker: Worker, consumer: ScriptedConsumer, partition: int) -> Callable[[], None]:
    def rebalance() -> None:
        worker._on_revoke(consumer, [TopicPartition("in", partition)])  # type: ignore[arg-type]
        worker._on_assign(consumer, [TopicPartition("in", partition)])  # type: ignore[arg-type]
    return rebalance


def test_messages_fetched_before_a_revoke_and_reassign_in_one_batch_are_dropped() -> None:
    consumer = ScriptedConsumer(committed_offsets={("in", 0): 5})
    worker = _worker(consumer)
    consumer.steps = [[FakeMessage("in", 0, 5), FakeMessage("in", 0, 6), FakeMessage("in", 1, 3)],
                      _revoke_and_reassign(worker, consumer, 0),
                      [FakeMessage("in", 0, 5), FakeMessage("in", 0, 6), FakeMessage("in", 0, 7)]]
    batch = worker._collect()
    # Partition 0 restarts at its committed offset; nothing of it is processed twice in one batch.
    assert [(m.partition, m.offset) for m in batch] == [(1, 3)]
    assert consumer.seeks == [(0, 5)]


def test_messages_in_hand_do_not_survive_a_revoke_and_reassign_within_one_wait() -> None:
    consumer = ScriptedConsumer()
    worker = _worker(consumer)
    consumer.steps = [[FakeMessage("in", 0, 5), FakeMessage("in", 1, 3)]]
    batch = worker._collect()
    consumer.steps = [_revoke_and_reassign(worker, consumer, 0)]
    kept = worker._wait(batch, 0.05)
    assert [(m.partition, m.offset) for m in kept] == [(1, 3)]


def test_partitions_assigned_during_a_wait_are_paused_too() -> None:
    consumer = ScriptedConsumer()
    worker = _worker(consumer)
    consumer.steps = [lambda: worker._on_assign(consumer, [TopicPartition("in", 2)])]  # type: ignore[arg-type]
    worker._wait([], 0.05)
    assert sorted(consumer.paused) == [0, 1, 2]


def test_a_partition_reassigned_during_a_wait_is_paused_again() -> None:
    consumer = ScriptedConsumer()
    worker = _worker(consumer)
    consumer.steps = [_revoke_and_reassign(worker, consumer, 1)]
    worker._wait([], 0.05)
    assert sorted(consumer.paused) == [0, 1, 1]
