"""Redis AUTH: the worker authenticates with REDIS_PASSWORD, and the secret shows up in no log or metric."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from reviews_mtl.settings import KafkaSettings
from reviews_mtl.stack.processes import free_port, spawn, wait_for
from reviews_mtl.stack.redis_server import ping, redis_argv
from tests.integration.consumer_harness import Pipeline, assert_aggregates_match_recount, keyed, make_reviews

pytestmark = pytest.mark.integration

SECRET = "s3cret-redis-Zq81"


def test_worker_uses_redis_auth_and_never_reveals_it(
    kafka_settings: KafkaSettings, demo_model_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    proc = spawn([*redis_argv(port, tmp_path), "--requirepass", SECRET], tmp_path / "redis.log",
                 die_with_parent=True)
    authed_url = f"redis://:{SECRET}@127.0.0.1:{port}/0"
    try:
        wait_for(lambda: ping(authed_url), what="redis with AUTH", timeout_s=30, process=proc)
        assert not ping(f"redis://127.0.0.1:{port}/0"), "the server must refuse clients without the password"
        pipe = Pipeline(kafka_settings, authed_url, demo_model_dir,
                        extra_env={"REDIS_URL": f"redis://127.0.0.1:{port}/0", "REDIS_PASSWORD": SECRET})
        reviews = make_reviews(120)
        pipe.produce(keyed(reviews))
        metrics_port = free_port()
        pipe.start_worker("--metrics-port", str(metrics_port), "-v")
        try:
            pipe.wait_until(lambda: pipe.committed_reviews() >= 120, 180, "all reviews")
            base = f"http://127.0.0.1:{metrics_port}"
            metrics = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
            ready = json.load(urllib.request.urlopen(f"{base}/readyz", timeout=5))
            assert ready["ok"] is True
            assert "reviews_mtl_enriched_reviews_total" in metrics
            assert SECRET not in metrics and SECRET not in json.dumps(ready)
        finally:
            assert pipe.stop_all() == [0]
        assert_aggregates_match_recount(pipe.store, pipe.enriched_records())
        logs = pipe.tail_logs()
        assert "worker started" in logs  # the debug log was really captured
        assert SECRET not in logs
    finally:
        proc.kill()
        proc.wait()
