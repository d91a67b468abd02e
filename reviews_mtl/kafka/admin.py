"""Topic administration: wait for a broker, create topics and wait for their leaders, the project's topic layout.

Topic layout (``ensure_topics``): the input and enriched topics get ``TopicSettings.partitions`` partitions
(the enriched topic is keyed by ``product_id`` like the input, so equal counts keep a product on the same
partition index); the dead-letter and alerts topics get one partition each: their records are rare, read by people
and tools in arrival order, and nothing scales on them. With a replication factor above 1, ``min.insync.replicas`` is
set to ``min(2, replication_factor)`` so ``acks=all`` survives one broker failure without losing
acknowledged data.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, KafkaException, TopicCollection

# confluent_kafka.admin re-exports these without __all__, which mypy strict reads as private.
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic  # type: ignore[attr-defined]

from reviews_mtl.kafka.clients import make_admin
from reviews_mtl.kafka.errors import BrokerUnavailableError, KafkaSetupError, TopicError, is_transient
from reviews_mtl.kafka.reading import high_watermarks, throwaway_reader
from reviews_mtl.settings import KafkaSettings, TopicSettings

logger = logging.getLogger(__name__)

DLQ_PARTITIONS = 1


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
            if not is_transient(error) or time.monotonic() >= deadline:
                raise TopicError(f"could not create topic {name!r}: {error.str()}") from exc
            logger.debug("retrying creation of %s after %s", name, error.str())
            time.sleep(0.5)
    while not _topic_ready(admin, name, partitions):
        if time.monotonic() >= deadline:
            raise TopicError(f"topic {name!r} did not get leaders for all {partitions} partitions in {timeout_s:.0f}s")
        time.sleep(0.1)
    # Metadata can name a leader before that broker serves the partition: ask each leader for its offsets.
    probe = throwaway_reader(kafka, "read_uncommitted")
    try:
        high_watermarks(probe, name, list(range(partitions)), max(1.0, deadline - time.monotonic()))
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


_NO_TOPIC_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # the all-zero Uuid, as some brokers (Tansu) answer


def topic_id(kafka: KafkaSettings, topic: str, timeout_s: float = 10.0) -> str:
    """The topic's id (Kafka gives a recreated topic a new one), or "" when the broker does not say or does not
    answer in time: callers then go without the check it allows."""
    admin = make_admin(kafka)
    try:
        description = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout_s)[topic].result()
    except (KafkaException, ValueError, TypeError) as exc:
        logger.debug("no topic id for %s: %s", topic, exc)
        return ""
    uuid = str(getattr(description, "topic_id", "") or "")
    return "" if uuid in ("", _NO_TOPIC_ID) else uuid


def ensure_topics(kafka: KafkaSettings, topics: TopicSettings) -> None:
    """Create the input, enriched and dead-letter topics if missing (layout in the module docstring)."""
    config: dict[str, str] = {}
    if topics.replication_factor > 1:
        config["min.insync.replicas"] = str(min(2, topics.replication_factor))
    layout = (
        (topics.input, topics.partitions),
        (topics.enriched, topics.partitions),
        (topics.dlq, DLQ_PARTITIONS),
        (topics.alerts, DLQ_PARTITIONS),
    )
    for name, partitions in layout:
        create_topic(kafka, name, partitions, topics.replication_factor, config=config)
