"""Topic administration and readiness helpers of reviews_mtl.kafka against the real broker; Redis round trip."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
import redis

from reviews_mtl.kafka import (
    DLQ_PARTITIONS,
    BrokerUnavailableError,
    TopicError,
    create_topic,
    end_offsets,
    ensure_topics,
    make_admin,
    make_producer,
    read_topic,
    wait_for_broker,
)
from reviews_mtl.settings import KafkaSettings, TopicSettings
from reviews_mtl.stack.processes import free_port

pytestmark = [pytest.mark.integration]


@pytest.mark.smoke
def test_ensure_topics_creates_the_documented_layout_and_is_idempotent(kafka_settings: KafkaSettings) -> None:
    suffix = uuid.uuid4().hex[:8]
    topics = TopicSettings(
        input=f"reviews-{suffix}", enriched=f"reviews-{suffix}.enriched", dlq=f"reviews-{suffix}.dlq",
        alerts=f"reviews-{suffix}.alerts", partitions=4,
    )
    ensure_topics(kafka_settings, topics)
    ensure_topics(kafka_settings, topics)  # existing topics are accepted as they are

    metadata = make_admin(kafka_settings).list_topics(timeout=10)
    names = (topics.input, topics.enriched, topics.dlq, topics.alerts)
    counts = {name: len(metadata.topics[name].partitions) for name in names}
    assert counts == {topics.input: 4, topics.enriched: 4, topics.dlq: DLQ_PARTITIONS, topics.alerts: DLQ_PARTITIONS}


@pytest.mark.smoke
def test_create_topic_refuses_an_existing_topic_when_asked(
    kafka_settings: KafkaSettings, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(2)
    create_topic(kafka_settings, topic, 2)  # exist_ok=True by default
    with pytest.raises(TopicError, match="already exists"):
        create_topic(kafka_settings, topic, 2, exist_ok=False)


@pytest.mark.smoke
def test_read_topic_returns_every_record_in_partition_order(
    kafka_settings: KafkaSettings, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(3)
    assert read_topic(kafka_settings, topic, idle_s=1) == []
    producer = make_producer(kafka_settings, linger_ms=20)  # several records per batch
    for i in range(60):
        producer.produce(topic, key=f"k{i}", value=f"{i}".encode())
    assert producer.flush(30) == 0

    messages = read_topic(kafka_settings, topic, isolation="read_uncommitted")

    assert sorted(int(m.value() or b"-1") for m in messages) == list(range(60))
    assert [(m.partition(), m.offset()) for m in messages] == sorted((m.partition(), m.offset()) for m in messages)


def test_end_offsets_are_high_watermarks(
    kafka_settings: KafkaSettings, unique_topic: Callable[..., str], kafka_backend: str
) -> None:
    if kafka_backend == "tansu":
        # Tansu 0.6.0 reports the last batch's base offset + 1 as the high watermark (reviews_mtl/stack/tansu.py).
        pytest.xfail("Tansu's high watermark ignores all but the first record of the last batch")
    topic = unique_topic(3)
    assert end_offsets(kafka_settings, topic) == {0: 0, 1: 0, 2: 0}
    producer = make_producer(kafka_settings, linger_ms=20)
    for i in range(60):
        producer.produce(topic, key=f"k{i}", value=b"x")
    assert producer.flush(30) == 0

    per_partition: dict[int, int] = {0: 0, 1: 0, 2: 0}
    for message in read_topic(kafka_settings, topic, isolation="read_uncommitted"):
        per_partition[message.partition() or 0] += 1
    # Idempotent, non-transactional records occupy offsets 0..n-1: the watermark is the count.
    assert end_offsets(kafka_settings, topic) == per_partition


def test_read_topic_of_a_missing_topic_is_a_clear_error(kafka_settings: KafkaSettings) -> None:
    with pytest.raises(TopicError, match="not readable"):
        read_topic(kafka_settings, f"missing-{uuid.uuid4().hex}", timeout_s=5)


def test_wait_for_broker_times_out_with_a_clear_error() -> None:
    closed = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", security_protocol="PLAINTEXT")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=r"no Kafka broker answered at 127\.0\.0\.1:"):
        wait_for_broker(closed, timeout_s=2)
    assert time.monotonic() - started < 10


@pytest.mark.smoke
def test_redis_round_trip(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"test:{uuid.uuid4().hex}"
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping={"count": 1, "sum": 4.5})
    pipe.hincrby(key, "count", 2)
    pipe.zadd(f"{key}:rank", {"p1": 3.0, "p2": 1.0})
    pipe.execute()
    # A server-side script, as the aggregate updates use.
    doubled = client.eval("return redis.call('HINCRBY', KEYS[1], 'count', ARGV[1])", 1, key, 3)
    assert doubled == 6
    assert client.hget(key, "sum") == b"4.5"
    assert client.zrange(f"{key}:rank", 0, -1) == [b"p2", b"p1"]
    client.close()
