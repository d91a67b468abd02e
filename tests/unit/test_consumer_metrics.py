"""Worker metrics: built against an injected registry, lag read from librdkafka statistics, served over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry

from consumer.http import serve
from consumer.metrics import WorkerMetrics


def test_two_bundles_do_not_collide_in_separate_registries() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    WorkerMetrics.create(a).consumed.inc(3)
    WorkerMetrics.create(b).consumed.inc(1)
    assert a.get_sample_value("reviews_mtl_consumed_messages_total") == 3
    assert b.get_sample_value("reviews_mtl_consumed_messages_total") == 1


def test_lag_comes_from_statistics_for_the_input_topic_only() -> None:
    reg = CollectorRegistry()
    m = WorkerMetrics.create(reg)
    stats = {
        "topics": {
            "reviews": {"partitions": {"0": {"consumer_lag": 12}, "1": {"consumer_lag": -1},
                                       "-1": {"consumer_lag": 99}}},
            "other": {"partitions": {"0": {"consumer_lag": 5}}},
        }
    }
    m.observe_stats(json.dumps(stats), "reviews")
    assert reg.get_sample_value("reviews_mtl_consumer_lag_messages", {"topic": "reviews", "partition": "0"}) == 12
    # Unknown lag (-1) and the internal partition -1 are not reported.
    assert reg.get_sample_value("reviews_mtl_consumer_lag_messages", {"topic": "reviews", "partition": "1"}) is None
    assert reg.get_sample_value("reviews_mtl_consumer_lag_messages", {"topic": "other", "partition": "0"}) is None


def test_dead_letters_are_counted_by_reason_and_latency_in_seconds() -> None:
    reg = CollectorRegistry()
    m = WorkerMetrics.create(reg)
    m.dead_letters.labels("invalid_json").inc()
    m.dead_letters.labels("invalid_json").inc()
    m.end_to_end_seconds.observe(0.3)
    assert reg.get_sample_value("reviews_mtl_dead_letters_total", {"reason": "invalid_json"}) == 2
    assert reg.get_sample_value("reviews_mtl_end_to_end_latency_seconds_bucket", {"le": "0.25"}) == 0
    assert reg.get_sample_value("reviews_mtl_end_to_end_latency_seconds_bucket", {"le": "0.5"}) == 1


def test_http_serves_metrics_and_probes() -> None:
    reg = CollectorRegistry()
    WorkerMetrics.create(reg).enriched.inc(7)
    ready = {"ok": False}
    server = serve(reg, 0, lambda: (True, "alive"), lambda: (ready["ok"], "detail"), host="127.0.0.1")
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        body = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        assert "reviews_mtl_enriched_reviews_total 7.0" in body
        assert json.load(urllib.request.urlopen(f"{base}/healthz", timeout=5))["ok"] is True
        try:
            urllib.request.urlopen(f"{base}/readyz", timeout=5)
            raise AssertionError("readyz should answer 503 while not ready")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
        ready["ok"] = True
        assert urllib.request.urlopen(f"{base}/readyz", timeout=5).status == 200
    finally:
        server.shutdown()


def test_a_client_that_sends_nothing_is_dropped_after_the_request_timeout() -> None:
    import socket
    import time

    server = serve(CollectorRegistry(), 0, lambda: (True, "alive"), lambda: (True, "ready"), host="127.0.0.1",
                   request_timeout_s=0.3)
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as idle:
            started = time.monotonic()
            assert idle.recv(1) == b""  # the server hung up on the silent client
            assert time.monotonic() - started < 3
    finally:
        server.shutdown()


def test_readiness_gives_a_coarse_reason_not_the_error_text() -> None:
    from consumer.app import coarse_reason

    assert coarse_reason("redis: Error 111 connecting to 10.0.0.7:6379. Connection refused.") == "redis unavailable"
    assert coarse_reason("kafka: commit_transaction: Broker: Not coordinator") == "kafka unavailable"
    assert coarse_reason("something else") == "degraded"
