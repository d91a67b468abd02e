"""The fault suite: crashes, outages, failover and rebalances, each mixed with bad input.

After every run: each valid review exactly once on the enriched topic (read_committed), each bad message
exactly once in the DLQ with its reason, Redis aggregates equal to a recount of the enriched topic, and
the watermarks at the end offsets. Each run appends a row (sent, enriched, dead-lettered, lost,
duplicated, time to recover) to ``runs/faults.jsonl`` and prints it.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reviews_mtl.kafka import make_admin
from reviews_mtl.settings import KafkaSettings
from reviews_mtl.stack.processes import free_port
from reviews_mtl.stack.redis_server import start_redis
from tests.faults.harness import KILLS, FaultRun, Monitor
from tests.integration.consumer_harness import Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.faults]

REDIS_DOWN_S = float(os.environ.get("REVIEWS_FAULT_REDIS_DOWN_S", "10"))
BROKER_DOWN_S = float(os.environ.get("REVIEWS_FAULT_BROKER_DOWN_S", "10"))
WORKER_ARGS = ("--batch-max-records", "64")


def _wait_for_share(run: FaultRun, share: float, timeout_s: float = 600.0) -> None:
    target = int(run.expected_messages * share)
    run.pipe.wait_until(lambda: run.processed() >= target, timeout_s, f"{share:.0%} of the stream")


def test_bad_input_catalogue_in_valid_traffic(kafka_settings: KafkaSettings, redis_url: str,
                                              demo_model_dir: Path) -> None:
    pipe = Pipeline(kafka_settings, redis_url, demo_model_dir, partitions=6)
    run = FaultRun(pipe, "bad input catalogue")
    run.load()
    assert len({reason for _, reason in run.bad}) >= 13
    pipe.start_worker(*WORKER_ARGS)
    pipe.start_worker(*WORKER_ARGS)
    try:
        run.wait_done()
    finally:
        pipe.stop_all()
    run.check()


def test_sigkill_random_workers(kafka_settings: KafkaSettings, redis_url: str, demo_model_dir: Path) -> None:
    pipe = Pipeline(kafka_settings, redis_url, demo_model_dir, partitions=6)
    run = FaultRun(pipe, f"SIGKILL x{KILLS}, 3 replicas")
    run.load()
    workers = [pipe.start_worker(*WORKER_ARGS) for _ in range(3)]
    monitor = Monitor(pipe)
    rnd = random.Random(20261127)
    mid_run_kills = 0
    try:
        _wait_for_share(run, 0.05)
        for _ in range(KILLS):
            time.sleep(rnd.uniform(0.3, 2.0))
            index = rnd.randrange(len(workers))
            workers[index].send_signal(signal.SIGKILL)
            workers[index].wait()
            monitor.fault()
            mid_run_kills += run.processed() < run.expected_messages
            workers[index] = pipe.start_worker(*WORKER_ARGS)  # what the supervisor or Kubernetes does
        run.wait_done()
    finally:
        monitor.stop()
        pipe.stop_all()
    assert mid_run_kills >= KILLS // 2, "most kills must land while the stream is still flowing"
    run.check(monitor)


def test_redis_down_then_back_with_aof(kafka_settings: KafkaSettings, demo_model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    directory = tmp_path / "redis-aof"
    redis_proc = start_redis(port, directory, tmp_path / "redis.log", appendonly=True, die_with_parent=True)
    url = f"redis://127.0.0.1:{port}/0"
    pipe = Pipeline(kafka_settings, url, demo_model_dir, partitions=6)
    run = FaultRun(pipe, f"Redis down {REDIS_DOWN_S:.0f}s (AOF)")
    run.load()
    pipe.start_worker(*WORKER_ARGS)
    pipe.start_worker(*WORKER_ARGS)
    monitor = Monitor(pipe)
    try:
        _wait_for_share(run, 0.3)
        redis_proc.send_signal(signal.SIGKILL)  # a crash, not a clean shutdown: AOF must hold every batch
        redis_proc.wait()
        time.sleep(REDIS_DOWN_S)
        assert all(p.poll() is None for p in pipe.procs), "workers must wait for Redis, not exit"
        redis_proc = start_redis(port, directory, tmp_path / "redis.log", appendonly=True, die_with_parent=True)
        monitor.fault()
        run.wait_done()
    finally:
        monitor.stop()
        pipe.stop_all()
    try:
        run.check(monitor)
    finally:
        redis_proc.kill()


def _leader_of_busiest(kafka: KafkaSettings, topic: str) -> int:
    metadata = make_admin(kafka).list_topics(topic, timeout=10)
    return int(metadata.topics[topic].partitions[0].leader)


def test_broker_leading_a_busy_partition_killed(apache_cluster: Callable[..., Any], demo_model_dir: Path,
                                                redis_url: str) -> None:
    cluster = apache_cluster(3)
    kafka = KafkaSettings(bootstrap_servers=cluster.bootstrap_servers)
    pipe = Pipeline(kafka, redis_url, demo_model_dir, partitions=6, replication_factor=3)
    run = FaultRun(pipe, f"Apache Kafka 3 brokers, partition leader killed {BROKER_DOWN_S:.0f}s")
    run.load()
    pipe.start_worker(*WORKER_ARGS)
    pipe.start_worker(*WORKER_ARGS)
    monitor = Monitor(pipe)
    try:
        _wait_for_share(run, 0.3)
        leader = _leader_of_busiest(kafka, pipe.input)
        cluster.kill_node(leader)
        monitor.fault()
        time.sleep(BROKER_DOWN_S)
        cluster.start_node(leader)
        run.wait_done()
    finally:
        monitor.stop()
        pipe.stop_all()
    run.check(monitor)


def test_scale_one_to_three_to_one(kafka_settings: KafkaSettings, redis_url: str, demo_model_dir: Path) -> None:
    pipe = Pipeline(kafka_settings, redis_url, demo_model_dir, partitions=6)
    run = FaultRun(pipe, "replicas 1 -> 3 -> 1")
    run.load()
    first = pipe.start_worker(*WORKER_ARGS)
    monitor = Monitor(pipe)
    try:
        _wait_for_share(run, 0.2)
        extra = [pipe.start_worker(*WORKER_ARGS) for _ in range(2)]
        monitor.fault()
        for proc in extra:
            pipe.wait_for_log(proc, "assigned")  # scale down replicas that are really serving
        _wait_for_share(run, 0.55)
        for proc in extra:
            proc.send_signal(signal.SIGTERM)
        monitor.fault()
        codes = [proc.wait(timeout=60) for proc in extra]
        assert codes == [0, 0], "a scaled-down replica drains and exits 0"
        assert first.poll() is None
        run.wait_done()
    finally:
        monitor.stop()
        pipe.stop_all()
    run.check(monitor)
