"""The Apache Kafka runner itself: three brokers, acks=all with min.insync.replicas=2 across a broker crash.

Independent of REVIEWS_TEST_KAFKA (it always starts its own cluster from the jars); about a minute on 2 cores.
"""

from __future__ import annotations

from typing import Any

import pytest

from reviews_mtl.kafka import create_topic, make_admin, make_producer, read_topic
from reviews_mtl.settings import KafkaSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _produce(settings: KafkaSettings, topic: str, prefix: str, count: int) -> None:
    producer = make_producer(settings)
    failures: list[object] = []
    for i in range(count):
        producer.produce(
            topic,
            key=f"k{i}",
            value=f"{prefix}{i}".encode(),
            on_delivery=lambda err, _msg: failures.append(err) if err else None,
        )
    assert producer.flush(60) == 0
    assert failures == []


def test_three_brokers_survive_one_crash_and_restart(apache_cluster: Any) -> None:
    cluster = apache_cluster(
        3, extra_config={"broker.session.timeout.ms": "4000", "broker.heartbeat.interval.ms": "500"}
    )
    settings = KafkaSettings(bootstrap_servers=cluster.bootstrap_servers, security_protocol="PLAINTEXT")
    assert len(make_admin(settings).list_topics(timeout=10).brokers) == 3
    assert cluster.min_insync_replicas == 2

    create_topic(settings, "replicated", 3, replication_factor=3)
    _produce(settings, "replicated", "before-", 60)

    cluster.kill_node(2)
    assert not cluster.node(2).alive()
    _produce(settings, "replicated", "during-", 60)  # two in-sync replicas left: acks=all still succeeds

    cluster.start_node(2)
    assert cluster.node(2).alive()
    assert len(make_admin(settings).list_topics(timeout=10).brokers) == 3
    _produce(settings, "replicated", "after-", 60)

    values = {(m.value() or b"").decode() for m in read_topic(settings, "replicated")}
    assert len(values) == 180
    assert {v.split("-")[0] for v in values} == {"before", "during", "after"}
