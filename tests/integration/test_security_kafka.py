"""SASL/SCRAM on Apache Kafka: unauthenticated clients are refused, the worker authenticates with
KAFKA_SASL_* and its password shows up in no log, metric or probe.

Independent of REVIEWS_TEST_KAFKA: it always starts its own one-broker SASL_PLAINTEXT cluster from the jars
(``ApacheKafkaCluster(sasl_users=...)``; the SCRAM users are created when the storage is formatted).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]
from pydantic import SecretStr

from reviews_mtl.kafka import client_config, create_topic, end_offsets, make_admin
from reviews_mtl.settings import KafkaSettings
from reviews_mtl.stack.apache_kafka import ApacheKafkaCluster, ApacheKafkaError
from reviews_mtl.stack.processes import free_port
from tests.integration.consumer_harness import Pipeline, assert_aggregates_match_recount, keyed, make_reviews

pytestmark = pytest.mark.integration

MECHANISM: Final = "SCRAM-SHA-256"
ADMIN_SECRET = "adm1n-Scram-Pw-71Kq"
WORKER_SECRET = "w0rker-Scram-Pw-Zq81"
SECRETS = (ADMIN_SECRET, WORKER_SECRET)


@pytest.fixture(scope="module")
def sasl_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafkaCluster]:
    cluster = ApacheKafkaCluster(
        tmp_path_factory.mktemp("kafka-sasl"),
        brokers=1,
        sasl_users={"admin": ADMIN_SECRET, "worker": WORKER_SECRET},
        sasl_mechanism=MECHANISM,
    )
    problem: str | None = None
    try:
        cluster.start(timeout_s=180)
    except ApacheKafkaError as exc:
        problem = str(exc)
    if problem is not None:  # a missing broker fails, never skips
        pytest.fail(f"Apache Kafka with SASL/SCRAM could not start: {problem}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


def _refused(settings: KafkaSettings, topic: str) -> list[KafkaError]:
    """Try to list topics and to produce one record as ``settings``; both must fail within seconds."""
    errors: list[KafkaError] = []
    admin = AdminClient(client_config(settings, error_cb=errors.append))
    started = time.monotonic()
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    assert time.monotonic() - started < 15
    admin.poll(0.5)  # serve the error callbacks

    reports: list[KafkaError | None] = []
    producer = Producer(client_config(settings, error_cb=errors.append, message_timeout_ms=4000))
    producer.produce(topic, b"must not arrive", on_delivery=lambda err, _msg: reports.append(err))
    assert producer.flush(15) == 0
    assert len(reports) == 1 and reports[0] is not None, "a delivery without valid credentials"
    assert reports[0].code() == KafkaError._MSG_TIMED_OUT
    return errors


def test_clients_without_valid_credentials_are_refused(sasl_cluster: ApacheKafkaCluster) -> None:
    admin_settings = sasl_cluster.client_settings()
    assert sasl_cluster.security_protocol == "SASL_PLAINTEXT"
    assert admin_settings.security_protocol == "SASL_PLAINTEXT" and admin_settings.sasl_username == "admin"
    topic = f"probe-{free_port()}"
    create_topic(admin_settings, topic, 1)

    plaintext = KafkaSettings(bootstrap_servers=sasl_cluster.bootstrap_servers, security_protocol="PLAINTEXT")
    _refused(plaintext, topic)

    for user in ("worker", "nobody"):
        wrong = KafkaSettings(
            bootstrap_servers=sasl_cluster.bootstrap_servers,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=MECHANISM,
            sasl_username=user,
            sasl_password=SecretStr("not-the-password"),
        )
        errors = _refused(wrong, topic)
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), [e.str() for e in errors]
        assert any("invalid credentials" in e.str() for e in errors), [e.str() for e in errors]

    # Nothing got in, and a right password for the same user works.
    worker = sasl_cluster.client_settings("worker")
    assert end_offsets(worker, topic) == {0: 0}
    assert topic in make_admin(worker).list_topics(timeout=10).topics


def test_worker_authenticates_with_scram_and_never_reveals_it(
    sasl_cluster: ApacheKafkaCluster, redis_url: str, demo_model_dir: Path
) -> None:
    # The harness creates topics, produces and reads back as the admin; the worker runs as "worker".
    pipe = Pipeline(
        sasl_cluster.client_settings(),
        redis_url,
        demo_model_dir,
        extra_env={
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": MECHANISM,
            "KAFKA_SASL_USERNAME": "worker",
            "KAFKA_SASL_PASSWORD": WORKER_SECRET,
        },
    )
    reviews = make_reviews(100)
    pipe.produce(keyed(reviews))
    metrics_port = free_port()
    pipe.start_worker("--metrics-port", str(metrics_port), "-v")
    try:
        pipe.wait_until(lambda: pipe.committed_reviews() >= len(reviews), 180, "all reviews")
        base = f"http://127.0.0.1:{metrics_port}"
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        ready_text = urllib.request.urlopen(f"{base}/readyz", timeout=5).read().decode()
        assert json.loads(ready_text)["ok"] is True
        assert "reviews_mtl_enriched_reviews_total" in metrics
        for secret in SECRETS:
            assert secret not in metrics and secret not in ready_text
    finally:
        assert pipe.stop_all() == [0]  # SIGTERM: a clean drain and exit

    records = pipe.enriched_records()  # read_committed, as the SASL admin
    ids = Counter(r["review_id"] for r in records)
    assert set(ids) == {r.review_id for r in reviews} and max(ids.values()) == 1, "each review exactly once"
    assert pipe.dead_letters() == []
    assert_aggregates_match_recount(pipe.store, records)

    logs = pipe.tail_logs()
    assert "worker started" in logs  # the debug log was really captured
    full_logs = "".join(log.read_text(errors="replace") for log in pipe.logs)
    broker_log = "".join(node.log_path.read_text(errors="replace") for node in sasl_cluster.nodes)
    assert "SASL_PLAINTEXT" in broker_log  # the broker's config dump is there, its JAAS password hidden
    for secret in SECRETS:
        assert secret not in full_logs
        assert secret not in broker_log
