"""Reading a topic whole, for tests, benchmarks and tools (never the streaming path): end offsets and records.

Each read uses a throwaway consumer (its own group, assign() only, never commits), so it disturbs no group.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Generator, Iterable
from typing import Literal

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition

from reviews_mtl.kafka.clients import make_consumer
from reviews_mtl.kafka.errors import TopicError, is_transient
from reviews_mtl.settings import KafkaSettings

logger = logging.getLogger(__name__)

IsolationLevel = Literal["read_committed", "read_uncommitted"]


def topic_partitions(consumer: Consumer, topic: str, timeout_s: float) -> list[int]:
    metadata = consumer.list_topics(topic=topic, timeout=timeout_s)
    entry = metadata.topics.get(topic)
    if entry is None or entry.error is not None:
        reason = entry.error if entry is not None else "missing from metadata"
        raise TopicError(f"topic {topic!r} is not readable: {reason}")
    return sorted(entry.partitions)


def throwaway_reader(kafka: KafkaSettings, isolation: IsolationLevel) -> Consumer:
    # A throwaway group that never commits: assign() does not join it, but librdkafka wants a group.id.
    return make_consumer(
        kafka,
        f"reviews-mtl-reader-{uuid.uuid4().hex[:12]}",
        **{"isolation.level": isolation, "enable.partition.eof": False},
    )


def high_watermarks(consumer: Consumer, topic: str, partitions: list[int], timeout_s: float) -> dict[int, int]:
    """High watermarks, retrying retriable errors: right after creation a partition's leader may still be
    taking over (NOT_LEADER_FOR_PARTITION) although metadata already names it."""
    deadline = time.monotonic() + timeout_s
    result: dict[int, int] = {}
    for p in partitions:
        while True:
            try:
                remaining = max(0.5, deadline - time.monotonic())
                result[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=remaining, cached=False)[1]
                break
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if not is_transient(error) or time.monotonic() >= deadline:
                    raise TopicError(f"no end offset for {topic}[{p}]: {error.str()}") from exc
                time.sleep(0.1)
    return result


def end_offsets(kafka: KafkaSettings, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """The high watermark (offset of the next record to be written) of each partition of ``topic``."""
    consumer = throwaway_reader(kafka, "read_uncommitted")
    try:
        return high_watermarks(consumer, topic, topic_partitions(consumer, topic, timeout_s), timeout_s)
    finally:
        consumer.close()


def read_topic(
    kafka: KafkaSettings,
    topic: str,
    *,
    isolation: IsolationLevel = "read_committed",
    timeout_s: float = 30.0,
    idle_s: float = 5.0,
) -> list[Message]:
    """Every record of every partition of ``topic`` from the beginning, sorted by (partition, offset).

    Reads until each partition's position reaches the high watermark taken at the start, or nothing new
    has arrived for ``idle_s`` (needed under ``read_committed``: an open transaction keeps the visible end
    below the high watermark), or ``timeout_s`` (logged); then drains until one 0.5s poll comes back empty,
    because the watermark is only a lower bound (later records; Tansu 0.6 understates it). For tests,
    benchmarks and tools; not for the streaming path.
    """
    consumer = throwaway_reader(kafka, isolation)
    messages: list[Message] = []
    try:
        partitions = topic_partitions(consumer, topic, timeout_s)
        targets = high_watermarks(consumer, topic, partitions, timeout_s)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        next_offset: dict[int, int] = {}
        pending = {p for p, high in targets.items() if high > 0}
        started = last_progress = time.monotonic()
        while pending:
            now = time.monotonic()
            if now - started >= timeout_s:
                logger.warning("read_topic(%s) timed out after %.1fs with %d records", topic, timeout_s, len(messages))
                break
            if now - last_progress >= idle_s:
                break
            batch = consumer.consume(num_messages=1000, timeout=0.2)
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                messages.append(message)
                partition = message.partition()
                offset = message.offset()
                if partition is not None and offset is not None:
                    next_offset[partition] = offset + 1
            if batch:
                last_progress = time.monotonic()
            pending = _unfinished(consumer, topic, pending, targets, next_offset)
        # The high watermark is a lower bound: records may have arrived since, and Tansu 0.6 answers 1 for
        # it. Read on until one poll comes back empty.
        while time.monotonic() - started < timeout_s:
            batch = [m for m in consumer.consume(num_messages=1000, timeout=0.5) if m.error() is None]
            if not batch:
                break
            messages.extend(batch)
    finally:
        consumer.close()
    messages.sort(key=lambda m: (m.partition() or 0, m.offset() or 0))
    return messages


def _start_offsets(consumer: Consumer, topic: str, partitions: list[int], since_ms: int | None,
                   timeout_s: float) -> dict[int, int]:
    """Where each partition's scan starts: the beginning, or the first record at or after ``since_ms``
    (offsets-for-times); a partition with no such record is left out."""
    if since_ms is None:
        return dict.fromkeys(partitions, OFFSET_BEGINNING)
    found = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions], timeout=timeout_s)
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def scan_topic(
    kafka: KafkaSettings,
    topic: str,
    *,
    isolation: IsolationLevel = "read_committed",
    since_ms: int | None = None,
    timeout_s: float = 30.0,
    idle_s: float = 5.0,
) -> Generator[Message, None, None]:
    """The records of ``topic`` visible now, from the beginning or from ``since_ms`` (epoch milliseconds, via
    offsets-for-times), yielded as they are read (in offset order within each partition). For tools that walk
    a topic once (``reviews-mtl dlq``); the end is found as in :func:`read_topic`. Stop early by closing it.
    """
    consumer = throwaway_reader(kafka, isolation)
    try:
        partitions = topic_partitions(consumer, topic, timeout_s)
        starts = _start_offsets(consumer, topic, partitions, since_ms, timeout_s)
        targets = high_watermarks(consumer, topic, sorted(starts), timeout_s)
        if not starts:
            return
        consumer.assign([TopicPartition(topic, p, offset) for p, offset in starts.items()])
        next_offset: dict[int, int] = {}
        pending = {p for p, high in targets.items() if high > max(starts[p], 0)}
        started = last_progress = time.monotonic()
        while True:
            # Once every partition reached its watermark, read on until one poll comes back empty: the
            # watermark is only a lower bound (see read_topic).
            batch = consumer.consume(num_messages=500, timeout=0.2 if pending else 0.5)
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                partition = message.partition()
                offset = message.offset()
                if partition is not None and offset is not None:
                    next_offset[partition] = offset + 1
                yield message
            now = time.monotonic()
            if batch:
                last_progress = now
            elif not pending:
                return
            if now - started >= timeout_s:
                logger.warning("scan_topic(%s) stopped after %.1fs", topic, timeout_s)
                return
            if pending and now - last_progress >= idle_s:
                pending = set()
                continue
            if pending:
                pending = _unfinished(consumer, topic, pending, targets, next_offset)
    finally:
        consumer.close()


def follow_topic(
    kafka: KafkaSettings, topic: str, *, isolation: IsolationLevel = "read_committed", poll_s: float = 0.5
) -> Generator[Message, None, None]:
    """The records written to ``topic`` from now on, as they arrive, until the caller stops (``tail --follow``)."""
    consumer = throwaway_reader(kafka, isolation)
    try:
        partitions = topic_partitions(consumer, topic, 10.0)
        consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
        while True:
            for message in consumer.consume(num_messages=500, timeout=poll_s):
                error = message.error()
                if error is None:
                    yield message
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
    finally:
        consumer.close()


def _unfinished(
    consumer: Consumer,
    topic: str,
    pending: Iterable[int],
    targets: dict[int, int],
    next_offset: dict[int, int],
) -> set[int]:
    # position() also moves past transaction control markers, which are never delivered as messages.
    positions = {tp.partition: tp.offset for tp in consumer.position([TopicPartition(topic, p) for p in pending])}
    return {p for p in pending if max(positions.get(p, -1), next_offset.get(p, -1)) < targets[p]}
