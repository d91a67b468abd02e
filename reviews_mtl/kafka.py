"""The one owner of Kafka clients: configuration, producers, consumers, admin, topics and test-side reads.

Every confluent-kafka client in the project is built here from ``KafkaSettings`` (so SASL/SSL apply everywhere
the same way) plus the role's own keys. The consumer and producer loops receive clients from these factories.

Keyword overrides (``**extra``) are librdkafka keys. Dotted keys are awkward as Python keywords, so an
underscore in a keyword name is read as a dot (``transactional_id="x"`` is ``transactional.id``); librdkafka
has no key with an underscore, so this is unambiguous. ``**{"transactional.id": "x"}`` works too.

Topic layout (``ensure_topics``): the input and enriched topics get ``TopicSettings.partitions`` partitions
(the enriched topic is keyed by ``product_id`` like the input, so equal counts keep a product on the same
partition index); the dead-letter topic gets one partition: dead letters are rare, read by people and tools
in arrival order, and nothing scales on them. With a replication factor above 1, ``min.insync.replicas`` is
set to ``min(2, replication_factor)`` so ``acks=all`` survives one broker failure without losing
acknowledged data.

Exceptions::

    KafkaSetupError (RuntimeError)
    ├── BrokerUnavailableError (also TimeoutError)  the broker did not answer in time
    └── TopicError                                  a topic could not be created or did not become ready
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

# confluent_kafka.admin re-exports these without __all__, which mypy strict reads as private.
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic  # type: ignore[attr-defined]

from reviews_mtl.settings import KafkaSettings, ProducerSettings, TopicSettings

__all__ = [
    "BrokerUnavailableError",
    "IsolationLevel",
    "KafkaSetupError",
    "TopicError",
    "client_config",
    "create_topic",
    "end_offsets",
    "ensure_topics",
    "make_admin",
    "make_consumer",
    "make_producer",
    "read_topic",
    "wait_for_broker",
]

logger = logging.getLogger(__name__)
# librdkafka's own log lines go through Python logging under this name instead of raw stderr.
_librdkafka_logger = logging.getLogger(__name__ + ".librdkafka")

IsolationLevel = Literal["read_committed", "read_uncommitted"]

DLQ_PARTITIONS = 1


class KafkaSetupError(RuntimeError):
    """Root of the errors raised while connecting to Kafka or preparing topics."""


class BrokerUnavailableError(KafkaSetupError, TimeoutError):
    """No broker answered a metadata request before the deadline."""


class TopicError(KafkaSetupError):
    """A topic could not be created, or its partitions did not all get a leader in time."""


# Errors that mean "not yet" around topic creation and leader moves. librdkafka flags only some as retriable
# (get_watermark_offsets never does), so these codes are retried explicitly.
_TRANSIENT_CODES = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_CONTROLLER,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
    }
)


def _transient(error: KafkaError) -> bool:
    return bool(error.retriable()) or error.code() in _TRANSIENT_CODES


# Python-only keys of confluent-kafka that contain an underscore and must stay as they are.
_CALLBACK_KEYS = frozenset({"stats_cb", "error_cb", "throttle_cb", "oauth_cb", "on_commit", "on_delivery", "logger"})


def _normalize(extra: dict[str, Any]) -> dict[str, Any]:
    return {key if key in _CALLBACK_KEYS else key.replace("_", "."): value for key, value in extra.items()}


def client_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """Connection keys from ``kafka`` (incl. SASL/SSL) merged with ``extra``; ``extra`` wins."""
    conf = kafka.as_librdkafka_dict()
    conf["logger"] = _librdkafka_logger
    conf.update(_normalize(extra))
    return conf


def make_producer(kafka: KafkaSettings, producer: ProducerSettings | None = None, **extra: Any) -> Producer:
    """An idempotent producer with ``acks=all``; pass ``transactional_id=...`` for a transactional one."""
    settings = producer if producer is not None else ProducerSettings()
    return Producer(client_config(kafka, **{**settings.as_librdkafka_dict(), **_normalize(extra)}))


def make_consumer(kafka: KafkaSettings, group_id: str, **extra: Any) -> Consumer:
    """A consumer in ``group_id`` that never auto-commits; it starts at the earliest offset by default."""
    base: dict[str, Any] = {
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    return Consumer(client_config(kafka, **{**base, **_normalize(extra)}))


def make_admin(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(client_config(kafka))


def _metadata(admin: AdminClient, timeout_s: float, topic: str | None = None) -> ClusterMetadata:
    if topic is None:
        return admin.list_topics(timeout=timeout_s)
    return admin.list_topics(topic=topic, timeout=timeout_s)


def wait_for_broker(kafka: KafkaSettings, timeout_s: float = 30.0) -> None:
    """Block until a broker answers a metadata request listing at least one broker.

    Raises ``BrokerUnavailableError`` naming the bootstrap servers and the last error on timeout.
    """
    admin = make_admin(kafka)
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            metadata = _metadata(admin, timeout_s=min(remaining, 2.0))
            if metadata.brokers:
                logger.debug("broker %s answered: %d broker(s)", kafka.bootstrap_servers, len(metadata.brokers))
                return
            last_error = KafkaSetupError("metadata lists no brokers yet")
        except KafkaException as exc:
            last_error = exc
        time.sleep(0.2)
    raise BrokerUnavailableError(
        f"no Kafka broker answered at {kafka.bootstrap_servers} within {timeout_s:.0f}s (last error: {last_error})"
    ) from last_error


def _topic_ready(admin: AdminClient, name: str, partitions: int) -> bool:
    try:
        metadata = _metadata(admin, timeout_s=2.0, topic=name)
    except KafkaException:
        return False
    topic = metadata.topics.get(name)
    if topic is None or topic.error is not None or len(topic.partitions) < partitions:
        return False
    return all(p.leader >= 0 and p.error is None for p in topic.partitions.values())


def create_topic(
    kafka: KafkaSettings,
    name: str,
    partitions: int,
    replication_factor: int = 1,
    config: dict[str, str] | None = None,
    exist_ok: bool = True,
    timeout_s: float = 30.0,
) -> None:
    """Create ``name`` and wait until its metadata shows every partition with a leader.

    With ``exist_ok`` an existing topic is accepted as is (a differing partition count is logged only).
    Retriable errors (e.g. a broker still registering with the controller) are retried until ``timeout_s``.
    """
    if partitions < 1 or replication_factor < 1:
        raise ValueError(f"partitions and replication_factor must be >= 1, got {partitions}, {replication_factor}")
    admin = make_admin(kafka)
    deadline = time.monotonic() + timeout_s
    new = NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, config=config or {})
    while True:
        future = admin.create_topics([new], operation_timeout=max(1.0, min(10.0, deadline - time.monotonic())))[name]
        try:
            future.result()
            logger.info("created topic %s (%d partitions, rf %d)", name, partitions, replication_factor)
            break
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                if not exist_ok:
                    raise TopicError(f"topic {name!r} already exists") from exc
                _warn_if_partitions_differ(admin, name, partitions)
                break
            if not _transient(error) or time.monotonic() >= deadline:
                raise TopicError(f"could not create topic {name!r}: {error.str()}") from exc
            logger.debug("retrying creation of %s after %s", name, error.str())
            time.sleep(0.5)
    while not _topic_ready(admin, name, partitions):
        if time.monotonic() >= deadline:
            raise TopicError(f"topic {name!r} did not get leaders for all {partitions} partitions in {timeout_s:.0f}s")
        time.sleep(0.1)
    # Metadata can name a leader before that broker serves the partition: ask each leader for its offsets.
    probe = _reader(kafka, "read_uncommitted")
    try:
        _watermarks(probe, name, list(range(partitions)), max(1.0, deadline - time.monotonic()))
    finally:
        probe.close()


def _warn_if_partitions_differ(admin: AdminClient, name: str, partitions: int) -> None:
    try:
        topic = _metadata(admin, timeout_s=5.0, topic=name).topics.get(name)
    except KafkaException:
        return
    if topic is not None and topic.error is None and len(topic.partitions) != partitions:
        logger.warning(
            "topic %s exists with %d partitions, not %d: left as is", name, len(topic.partitions), partitions
        )


def ensure_topics(kafka: KafkaSettings, topics: TopicSettings) -> None:
    """Create the input, enriched and dead-letter topics if missing (layout in the module docstring)."""
    config: dict[str, str] = {}
    if topics.replication_factor > 1:
        config["min.insync.replicas"] = str(min(2, topics.replication_factor))
    layout = (
        (topics.input, topics.partitions),
        (topics.enriched, topics.partitions),
        (topics.dlq, DLQ_PARTITIONS),
    )
    for name, partitions in layout:
        create_topic(kafka, name, partitions, topics.replication_factor, config=config)


def _partitions(consumer: Consumer, topic: str, timeout_s: float) -> list[int]:
    metadata = consumer.list_topics(topic=topic, timeout=timeout_s)
    entry = metadata.topics.get(topic)
    if entry is None or entry.error is not None:
        reason = entry.error if entry is not None else "missing from metadata"
        raise TopicError(f"topic {topic!r} is not readable: {reason}")
    return sorted(entry.partitions)


def _reader(kafka: KafkaSettings, isolation: IsolationLevel) -> Consumer:
    # A throwaway group that never commits: assign() does not join it, but librdkafka wants a group.id.
    return make_consumer(
        kafka,
        f"reviews-mtl-reader-{uuid.uuid4().hex[:12]}",
        **{"isolation.level": isolation, "enable.partition.eof": False},
    )


def _watermarks(consumer: Consumer, topic: str, partitions: list[int], timeout_s: float) -> dict[int, int]:
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
                if not _transient(error) or time.monotonic() >= deadline:
                    raise TopicError(f"no end offset for {topic}[{p}]: {error.str()}") from exc
                time.sleep(0.1)
    return result


def end_offsets(kafka: KafkaSettings, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """The high watermark (offset of the next record to be written) of each partition of ``topic``."""
    consumer = _reader(kafka, "read_uncommitted")
    try:
        return _watermarks(consumer, topic, _partitions(consumer, topic, timeout_s), timeout_s)
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
    consumer = _reader(kafka, isolation)
    messages: list[Message] = []
    try:
        partitions = _partitions(consumer, topic, timeout_s)
        targets = _watermarks(consumer, topic, partitions, timeout_s)
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
