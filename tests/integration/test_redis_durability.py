"""Redis durability as the worker judges it at start, against real Redis servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from reviews_mtl.aggregates.durability import DurabilityWait, NotDurable, read_durability, wait_durable
from reviews_mtl.settings import KafkaSettings
from reviews_mtl.stack.processes import free_port
from reviews_mtl.stack.redis_server import start_redis
from tests.integration.consumer_harness import Pipeline

pytestmark = pytest.mark.integration


def test_a_redis_without_aof_is_judged_able_to_lose_batches(redis_url: str) -> None:
    report = read_durability(redis.Redis.from_url(redis_url))
    assert report.version >= (6,) and not report.aof
    [problem] = report.problems()
    assert "appendonly is off" in problem


def test_a_redis_with_aof_always_and_no_eviction_has_no_problem(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis(port, tmp_path / "aof", tmp_path / "redis.log", appendonly=True, die_with_parent=True)
    try:
        client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
        report = read_durability(client)
        assert report.aof and report.appendfsync == "always" and report.problems() == []
        client.config_set("maxmemory", "100mb")
        client.config_set("maxmemory-policy", "allkeys-lru")
        assert any("allkeys-lru" in p for p in read_durability(client).problems())
        assert any("REDIS_WAIT_REPLICAS is 1" in p for p in report.problems(wait_replicas=1))
        # WAIT for a replica that is not there: the batch is not confirmed, and the worker retries it.
        with pytest.raises(NotDurable):
            wait_durable(client, DurabilityWait(waitaof=False, replicas=1, timeout_ms=100))
    finally:
        proc.kill()
        proc.wait()


def test_require_refuses_to_start_on_a_redis_that_can_lose_batches(
    kafka_settings: KafkaSettings, redis_url: str, demo_model_dir: Path
) -> None:
    pipe = Pipeline(kafka_settings, redis_url, demo_model_dir, partitions=1)
    env = {**pipe.env(), "REDIS_DURABILITY": "require"}
    done = subprocess.run([sys.executable, "-m", "consumer"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "REDIS_DURABILITY=require" in done.stderr and "appendonly is off" in done.stderr
