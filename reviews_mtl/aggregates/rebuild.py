"""Repairs of the aggregates, for an operator: rebuild them from Kafka, or accept a recreated input topic.

``rebuild`` recomputes every aggregate and watermark of a key prefix from what Kafka committed: the enriched topic
read with ``read_committed`` (each counted review, each edit, each retraction, with its source coordinates) and the
dead-letter topic (bad input at its source offsets), replayed in source-offset order through the same script the
workers use, so the same rules apply; the input topic is only counted (re-sends leave no other trace). The watermark
of each input partition becomes the consumer group's committed offset - 1: a transaction commits a batch's outputs
and its offsets together, so the enriched topic holds exactly what was counted below that offset. While it runs, the
rebuild holds ``P:meta rebuild``: the script refuses every other writer, workers set their partitions aside and take
them back once it is released.

``reset_topic`` forgets the watermarks, copies and topic id of one input topic (after it was recreated, or moved to
another cluster), keeping the counts: reviews of the old topic stay counted, and a re-send of one is recognized as
such by its review id.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import TopicPartition

from reviews_mtl.aggregates import keys
from reviews_mtl.aggregates.store import AggregateStore, AppliedRecord, PartitionBatch
from reviews_mtl.contracts import DeadLetter
from reviews_mtl.kafka import make_consumer, scan_topic, topic_id
from reviews_mtl.kafka.reading import topic_partitions
from reviews_mtl.settings import KafkaSettings

log = logging.getLogger(__name__)

# Records per script call while replaying: large enough to be quick, small enough not to block Redis for long.
CHUNK = 2000


class RebuildError(RuntimeError):
    """The rebuild could not start or finish (another one holds the lock, the group is moving, Kafka away)."""


@dataclass
class RebuildReport:
    enriched: int = 0
    retractions: int = 0
    dead_letters: int = 0
    messages: int = 0
    resends: int = 0
    alerts: int = 0
    watermarks: dict[tuple[str, int], int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"enriched": self.enriched, "retractions": self.retractions, "dead_letters": self.dead_letters,
                "messages": self.messages, "resends": self.resends, "alerts": self.alerts,
                "watermarks": {f"{t}:{p}": o for (t, p), o in sorted(self.watermarks.items())},
                "elapsed_s": round(self.elapsed_s, 1)}


def committed_offsets(kafka: KafkaSettings, group: str, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (partitions without one left out); reading them
    joins nothing."""
    consumer = make_consumer(kafka, group, **{"enable.auto.commit": False})
    try:
        partitions = topic_partitions(consumer, topic, timeout_s)
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout_s)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def _applied(record: dict[str, Any], offset: int) -> AppliedRecord:
    """What one enriched-topic record contributed, as the worker applied it."""
    body = json.dumps(record, separators=(",", ":")).encode("utf-8")
    if record.get("op") == "delete":
        return AppliedRecord(offset=offset, review_id=record["review_id"], product_id=record["product_id"],
                             sentiment="", rating=0.0, aspects=(), seen_at=record.get("timestamp") or 0.0,
                             enriched=body, version=record.get("version"), event_time=record.get("timestamp"),
                             delete=True)
    timestamp = record.get("timestamp")
    return AppliedRecord(
        offset=offset, review_id=record["review_id"], product_id=record["product_id"],
        sentiment=record["sentiment"]["label"], rating=float(record["rating"]),
        aspects=tuple(record.get("aspects_detected") or ()),
        seen_at=timestamp if timestamp is not None else float(record["processed_at"]),
        enriched=body, version=record.get("version"), event_time=timestamp,
        true_rating=record.get("true_rating"), model_version=str(record.get("model_version", "")),
        predicted_at=float(record["processed_at"]), stars=record.get("stars"),
    )


def _clear(store: AggregateStore) -> int:
    """Delete every key the workers derive from Kafka (not the lock, not the re-drive ledger)."""
    removed = 0
    for pattern in keys.derived_key_patterns(store.prefix):
        batch = list(store.client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(batch), 500):
            removed += int(store.client.delete(*batch[i:i + 500]))
    return removed


def rebuild(
    store: AggregateStore,
    kafka: KafkaSettings,
    *,
    group: str,
    input_topic: str,
    enriched_topic: str,
    dlq_topic: str,
    alerts_topic: str | None = None,
    settle_s: float = 5.0,
    force: bool = False,
    progress: Callable[[int], None] = lambda n: None,
) -> RebuildReport:
    """Rebuild the aggregates of ``store.prefix`` from Kafka (see the module docstring)."""
    started = time.monotonic()
    token = uuid.uuid4().hex
    meta = keys.meta_key(store.prefix)
    if force:
        store.client.hset(meta, "rebuild", token)
    elif not store.client.hsetnx(meta, "rebuild", token):
        raise RebuildError(f"another rebuild holds {meta} (rebuild); if it died, run again with --force")
    try:
        # Let a batch a worker applied just before the lock finish its Kafka commit, then read what is committed.
        time.sleep(settle_s)
        committed = committed_offsets(kafka, group, input_topic)
        report = _replay(store, kafka, token, input_topic, enriched_topic, dlq_topic, progress)
        if committed_offsets(kafka, group, input_topic) != committed:
            raise RebuildError(f"group {group} committed offsets while the rebuild read Kafka: stop its workers "
                               "(or let them set their partitions aside) and run it again")
        _set_watermarks(store, input_topic, committed, report)
        _set_message_totals(store, kafka, input_topic, committed, report)
        if alerts_topic is not None:
            # Alerts are not decided again (they were raised when it happened); their count is the topic's.
            report.alerts = sum(1 for _ in scan_topic(kafka, alerts_topic, isolation="read_committed", timeout_s=600))
            if report.alerts:
                store.client.hset(keys.totals_key(store.prefix), "alerts", report.alerts)
        tid = topic_id(kafka, input_topic)
        if tid:
            store.client.hset(keys.topic_ids_key(store.prefix), input_topic, tid)
    finally:
        if store.client.hget(meta, "rebuild") == token.encode():
            store.client.hdel(meta, "rebuild")
    report.elapsed_s = time.monotonic() - started
    return report


def _replay(store: AggregateStore, kafka: KafkaSettings, token: str, input_topic: str, enriched_topic: str,
            dlq_topic: str, progress: Callable[[int], None]) -> RebuildReport:
    report = RebuildReport()
    records: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for message in scan_topic(kafka, enriched_topic, isolation="read_committed", timeout_s=3600):
        record = json.loads(message.value() or b"{}")
        source = record.get("source") or {}
        if source.get("topic") != input_topic:
            continue
        records[int(source["partition"])].append((int(source["offset"]), record))
        if record.get("op") == "delete":
            report.retractions += 1
        else:
            report.enriched += 1
        progress(report.enriched + report.retractions)
    dead: dict[int, list[int]] = defaultdict(list)
    for message in scan_topic(kafka, dlq_topic, isolation="read_committed", timeout_s=3600):
        try:
            letter = DeadLetter.from_headers(message.headers(), None)
        except ValueError:
            continue
        if letter.source.topic == input_topic:
            dead[letter.source.partition].append(letter.source.offset)
            report.dead_letters += 1
    _clear(store)
    for partition in sorted(set(records) | set(dead)):
        # One stream in offset order: a dead letter below a record of an earlier chunk would read as applied.
        ordered: list[tuple[int, dict[str, Any] | None]] = sorted(
            [*records.get(partition, []), *((o, None) for o in set(dead.get(partition, [])))], key=lambda r: r[0])
        for chunk in _chunks(ordered, CHUNK):
            store.apply_batch([PartitionBatch(
                input_topic, partition, first=chunk[0][0],
                records=[_applied(rec, offset) for offset, rec in chunk if rec is not None],
                dead_offsets=[offset for offset, rec in chunk if rec is None])], lock=token, alerts=False)
        report.watermarks[(input_topic, partition)] = int(
            store.watermarks_for([(input_topic, partition)])[(input_topic, partition)])
    return report


def _set_watermarks(store: AggregateStore, topic: str, committed: dict[int, int], report: RebuildReport) -> None:
    """Everything below the committed offset was counted, whatever the last record of it was (a re-send leaves
    none); the copies of a last batch are dropped: nothing is in flight after a rebuild."""
    for partition, offset in committed.items():
        mark = max(report.watermarks.get((topic, partition), -1), offset - 1)
        report.watermarks[(topic, partition)] = mark
        store.client.hset(keys.watermarks_key(store.prefix), keys.partition_field(topic, partition), str(mark))
    for key in store.client.scan_iter(match=keys.inflight_pattern(store.prefix, topic), count=1000):
        store.client.delete(key)


def _set_message_totals(store: AggregateStore, kafka: KafkaSettings, topic: str, committed: dict[int, int],
                        report: RebuildReport) -> None:
    """``messages`` and ``resends`` leave no record on the output topics: count the input messages below the
    committed offsets; those neither published nor dead-lettered were re-sends."""
    messages = 0
    for message in scan_topic(kafka, topic, isolation="read_committed", timeout_s=3600):
        partition, offset = message.partition(), message.offset()
        if partition is not None and offset is not None and offset < committed.get(partition, 0):
            messages += 1
    report.messages = messages
    report.resends = max(0, messages - report.enriched - report.retractions - report.dead_letters)
    totals = keys.totals_key(store.prefix)
    store.client.hset(totals, mapping={"messages": messages, "resends": report.resends})


def _chunks(items: list[tuple[int, dict[str, Any] | None]],
            size: int) -> Iterable[list[tuple[int, dict[str, Any] | None]]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def reset_topic(store: AggregateStore, topic: str) -> dict[str, int]:
    """Forget one input topic's watermarks, last-batch copies and topic id (see the module docstring)."""
    client = store.client
    fields = [f for f in cast(list[bytes], client.hkeys(keys.watermarks_key(store.prefix)))
              if f.decode().rpartition(":")[0] == topic]
    if fields:
        client.hdel(keys.watermarks_key(store.prefix), *fields)
    copies = list(client.scan_iter(match=keys.inflight_pattern(store.prefix, topic), count=1000))
    if copies:
        client.delete(*copies)
    client.hdel(keys.topic_ids_key(store.prefix), topic)
    return {"watermarks": len(fields), "copies": len(copies)}
