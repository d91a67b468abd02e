"""Faults that break what the watermarks assume, each ending with the same invariants as ``test_faults.py``: a
zombie worker, a rebalance while commits are pending, Redis restored from an older snapshot, the input topic
recreated, an oversized bad message, and SIGTERM while the broker is away."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from reviews_mtl.contracts import DLQ_HEADER_ORIGINAL_SIZE
from reviews_mtl.kafka import create_topic, make_admin, make_producer, read_topic
from reviews_mtl.settings import KafkaSettings
from reviews_mtl.stack.processes import free_port
from reviews_mtl.stack.redis_server import start_redis
from tests.faults.harness import FaultRun, Monitor
from tests.integration.consumer_harness import Pipeline, assert_aggregates_match_recount, keyed, make_reviews

pytestmark = [pytest.mark.integration, pytest.mark.faults]

WORKER_ARGS = ("--batch-max-records", "64")


def _wait_for_share(run: FaultRun, share: float, timeout_s: float = 600.0) -> None:
    target = int(run.expected_messages * share)
    run.pipe.wait_until(lambda: run.processed() >= target, timeout_s, f"{share:.0%} of the stream")


def _logged(pipe: Pipeline, text: str) -> bool:
    return any(log.exists() and text in log.read_text(errors="replace") for log in pipe.logs)


def _cli(pipe: Pipeline, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reviews_mtl.cli", *args], env=pipe.env(), capture_output=True,
                          text=True, timeout=timeout_s)


def test_zombie_worker_stopped_past_its_session_then_continued(kafka_settings: KafkaSettings, redis_url: str,
                                                                demo_model_dir: Path) -> None:
    """SIGSTOP a worker past the session timeout: the group gives its partitions away; on SIGCONT its open
    transaction is fenced, what it applied in Redis is replayed by the new owner, and it rejoins."""
    pipe = Pipeline(kafka_settings, redis_url, demo_model_dir, partitions=6)
    run = FaultRun(pipe, "zombie: SIGSTOP past the session timeout, then SIGCONT")
    run.load()
    zombie = pipe.start_worker(*WORKER_ARGS)
    pipe.start_worker(*WORKER_ARGS)
    monitor = Monitor(pipe)
    try:
        _wait_for_share(run, 0.25)
        zombie.send_signal(signal.SIGSTOP)
        monitor.fault()
        time.sleep(10.0)  # past the 6 s session timeout of the tests
        zombie.send_signal(signal.SIGCONT)
        run.wait_done()
        assert zombie.poll() is None, "the zombie recovers and stays"
    finally:
        monitor.stop()
        pipe.stop_all()
    run.check(monitor)


def test_rebalance_while_commits_are_pending(apache_cluster: Callable[..., Any], demo_model_dir: Path,
                                             redis_url: str) -> None:
    """A broker dies (commits fail and are retried) while a third worker joins (partitions move mid-retry)."""
    cluster = apache_cluster(3)
    kafka = KafkaSettings(bootstrap_servers=cluster.bootstrap_servers)
    pipe = Pipeline(kafka, redis_url, demo_model_dir, partitions=6, replication_factor=3)
    run = FaultRun(pipe, "rebalance while commits are pending (broker killed + a worker joins)")
    run.load()
    pipe.start_worker(*WORKER_ARGS)
    pipe.start_worker(*WORKER_ARGS)
    monitor = Monitor(pipe)
    try:
        _wait_for_share(run, 0.3)
        coordinator = int(make_admin(kafka).list_topics(pipe.input, timeout=10).topics[pipe.input].partitions[0]
                          .leader)
        cluster.kill_node(coordinator)
        third = pipe.start_worker(*WORKER_ARGS)
        monitor.fault()
        time.sleep(8.0)
        cluster.start_node(coordinator)
        pipe.wait_for_log(third, "assigned")
        run.wait_done()
    finally:
        monitor.stop()
        pipe.stop_all()
    run.check(monitor)


def test_redis_restored_from_an_older_snapshot_is_detected_then_rebuilt(
    kafka_settings: KafkaSettings, demo_model_dir: Path, tmp_path: Path
) -> None:
    """Redis comes back without the last batches Kafka committed (an older snapshot): the workers set those
    partitions aside instead of counting on top of the gap; `aggregates rebuild` repairs; the run ends exact."""
    port = free_port()
    directory = tmp_path / "redis-rdb"
    log = tmp_path / "redis.log"
    redis_proc = start_redis(port, directory, log, die_with_parent=True)
    url = f"redis://127.0.0.1:{port}/0"
    pipe = Pipeline(kafka_settings, url, demo_model_dir, partitions=6)
    run = FaultRun(pipe, "Redis restored from an older snapshot, then rebuilt")
    run.load()
    pipe.start_worker(*WORKER_ARGS)
    pipe.start_worker(*WORKER_ARGS)
    monitor = Monitor(pipe)
    try:
        _wait_for_share(run, 0.2)
        redis.Redis.from_url(url).save()
        shutil.copy(directory / "dump.rdb", tmp_path / "older.rdb")
        _wait_for_share(run, 0.5)
        redis_proc.send_signal(signal.SIGKILL)
        redis_proc.wait()
        shutil.copy(tmp_path / "older.rdb", directory / "dump.rdb")
        redis_proc = start_redis(port, directory, log, die_with_parent=True)
        monitor.fault()
        pipe.wait_until(lambda: _logged(pipe, "set aside"), 120, "the integrity alarm")
        assert _logged(pipe, "redis_behind")
        rebuilt = _cli(pipe, "aggregates", "rebuild", "--json")
        assert rebuilt.returncode == 0, rebuilt.stderr
        pipe.wait_until(lambda: _logged(pipe, "taken back"), 60, "the partitions taken back")
        run.wait_done()
    finally:
        monitor.stop()
        pipe.stop_all()
    try:
        run.check(monitor)
    finally:
        redis_proc.kill()


def test_input_topic_recreated_is_detected_then_accepted(kafka_settings: KafkaSettings, redis_url: str,
                                                         demo_model_dir: Path) -> None:
    """The input topic is deleted and created again (new id, offsets from 0): its new reviews sit at offsets the
    watermarks call counted. Workers refuse it until an operator accepts it with `aggregates reset-topic`."""
    pipe = Pipeline(kafka_settings, redis_url, demo_model_dir, partitions=3)
    first = make_reviews(300, products=20)
    pipe.produce(keyed(first))
    pipe.start_worker(*WORKER_ARGS)
    try:
        pipe.wait_until(lambda: pipe.store.totals().get("messages", 0) >= 300, 300, "the first stream")
    finally:
        assert pipe.stop_all() == [0]
    admin = make_admin(pipe.kafka)
    admin.delete_topics([pipe.input], operation_timeout=30)[pipe.input].result()
    deadline = time.monotonic() + 60
    while pipe.input in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.5)
    create_topic(pipe.kafka, pipe.input, 3)
    second = make_reviews(200, products=20, start=300)
    pipe.produce(keyed(second))
    pipe.start_worker(*WORKER_ARGS)
    try:
        pipe.wait_until(lambda: _logged(pipe, "topic_changed"), 120, "the recreated topic refused")
        assert pipe.store.totals()["messages"] == 300  # nothing of the new topic was skipped as counted
        accepted = _cli(pipe, "aggregates", "reset-topic", pipe.input)
        assert accepted.returncode == 0, accepted.stderr
        pipe.wait_until(lambda: pipe.store.totals().get("messages", 0) >= 500, 300, "the new topic's reviews")
        pipe.wait_until(lambda: len(pipe.enriched_records()) >= 500, 60, "the committed output")
    finally:
        pipe.stop_all()
    records = pipe.enriched_records()
    assert sorted(r["review_id"] for r in records) == sorted(r.review_id for r in [*first, *second])
    assert_aggregates_match_recount(pipe.store, records)


def test_an_oversized_bad_message_is_dead_lettered_and_its_partition_moves_on(
    kafka_settings: KafkaSettings, redis_url: str, demo_model_dir: Path
) -> None:
    """A bad value close to what the input topic accepts (2 MB here) cannot go to the DLQ whole (1 MB): it goes
    cut, with its size and hash, and the reviews after it are processed."""
    pipe = Pipeline(kafka_settings, redis_url, demo_model_dir, partitions=1)
    limit = ConfigEntry("max.message.bytes", "2100000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, pipe.input, incremental_configs=[limit])
    admin = make_admin(pipe.kafka)  # kept alive until its futures are done
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()
    reviews = make_reviews(100, products=5)
    huge = b"\xff" * 2_000_000
    producer_values = [*keyed(reviews[:50]), (b"p1", huge), *keyed(reviews[50:])]
    producer = make_producer(pipe.kafka, None, **{"message.max.bytes": 2_100_000})
    for key, value in producer_values:
        producer.produce(pipe.input, key=key, value=value)
    assert producer.flush(30) == 0
    pipe.start_worker()
    try:
        pipe.wait_until(lambda: pipe.store.totals().get("messages", 0) >= 101, 300, "every message")
        pipe.wait_until(lambda: len(pipe.dead_letters()) >= 1 and len(pipe.enriched_records()) >= 100, 60, "output")
    finally:
        assert pipe.stop_all() == [0]
    [letter] = read_topic(pipe.kafka, pipe.dlq)
    headers = dict(letter.headers() or [])
    assert headers[DLQ_HEADER_ORIGINAL_SIZE] == b"2000000" and len(letter.value() or b"") < 1_000_000
    assert headers["x-error-reason"] == b"invalid_utf8"
    assert len({r["review_id"] for r in pipe.enriched_records()}) == 100


def test_sigterm_while_the_broker_is_away_exits_0_within_the_drain_bound(
    apache_cluster: Callable[..., Any], demo_model_dir: Path, redis_url: str
) -> None:
    cluster = apache_cluster(1)
    kafka = KafkaSettings(bootstrap_servers=cluster.bootstrap_servers)
    pipe = Pipeline(kafka, redis_url, demo_model_dir, partitions=2)
    pipe.extra_env.update({"REVIEWS_CONSUMER_DRAIN_TIMEOUT_S": "10", "REVIEWS_CONSUMER_TRANSACTION_TIMEOUT_MS": "7000"})
    pipe.produce(keyed(make_reviews(2000, products=20)))
    worker = pipe.start_worker(*WORKER_ARGS)
    pipe.wait_until(lambda: pipe.store.totals().get("messages", 0) >= 200, 300, "a few batches")
    cluster.kill_node(cluster.nodes[0].node_id)
    time.sleep(3.0)  # commits now fail and are retried
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(timeout=60)
    took = time.monotonic() - started
    assert code == 0, pipe.tail_logs()
    print(f"\nSIGTERM with the broker away: exit {code} after {took:.1f}s (drain bound 10 s)")
    assert took <= 10.0 + 2.0, f"{took:.1f}s"
