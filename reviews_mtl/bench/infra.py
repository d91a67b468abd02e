"""The real servers and isolated pipelines the end-to-end benchmarks run on.

:func:`bench_servers` starts what the run needs (the embedded Tansu broker by default, Apache Kafka from the
cached jars with ``broker="apache"``, or nothing when the caller brings a cluster) plus a Redis, and stops
only what it started. A :class:`Pipeline` is one isolated copy of the service on those servers: its own
topics, consumer group and Redis key prefix, real ``python -m consumer`` worker processes, a publisher (bulk
or rate-limited with the producer's token bucket) and an :class:`EnrichedTail` that reads the enriched topic
with ``read_committed`` and stamps each record with the wall-clock time it became visible.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from reviews_mtl.contracts import Review
from reviews_mtl.settings import KafkaSettings

if TYPE_CHECKING:
    from producer.publisher import Publisher

logger = logging.getLogger(__name__)

BrokerKind = Literal["tansu", "apache", "external"]
# Tansu completes a group join only after half the session timeout: keep it at the allowed minimum.
SESSION_TIMEOUT_MS = 6000


class BenchError(RuntimeError):
    """A benchmark step could not finish (a worker died, records never arrived, a server did not start)."""


@dataclass(frozen=True)
class Servers:
    kafka: KafkaSettings
    redis_url: str
    broker: BrokerKind
    description: str


@contextlib.contextmanager
def bench_servers(
    broker: Literal["tansu", "apache"] = "tansu",
    *,
    bootstrap_servers: str | None = None,
    redis_url: str | None = None,
    workdir: Path | None = None,
) -> Iterator[Servers]:
    """Start (or adopt) a broker and a Redis for the run; stop what was started on exit."""
    from reviews_mtl.kafka import wait_for_broker
    from reviews_mtl.stack.processes import free_port
    from reviews_mtl.stack.redis_server import start_redis

    with contextlib.ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reviews-bench-")))
        kind: BrokerKind
        if bootstrap_servers:
            kafka = KafkaSettings(bootstrap_servers=bootstrap_servers)
            kind, what = "external", f"external Kafka at {bootstrap_servers}"
        elif broker == "apache":
            from reviews_mtl.stack.apache_kafka import ApacheKafkaCluster

            cluster = ApacheKafkaCluster(root / "apache-kafka", brokers=1)
            cluster.start()
            stack.callback(cluster.stop)
            kafka = KafkaSettings(bootstrap_servers=cluster.bootstrap_servers, security_protocol="PLAINTEXT")
            kind, what = "apache", f"Apache Kafka {cluster.version} (1 broker, KRaft) at {cluster.bootstrap_servers}"
        else:
            from reviews_mtl.stack.tansu import start_tansu

            port = free_port()
            tansu = start_tansu(port, root / "tansu.log", die_with_parent=True)
            stack.callback(_stop_process, tansu)
            kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="PLAINTEXT")
            kind, what = "tansu", f"Tansu (embedded, memory storage) at {kafka.bootstrap_servers}"
        wait_for_broker(kafka, timeout_s=60)
        if not redis_url:
            port = free_port()
            redis = start_redis(port, root / "redis", root / "redis.log", die_with_parent=True)
            stack.callback(_stop_process, redis)
            redis_url = f"redis://127.0.0.1:{port}/0"
        logger.info("bench servers: %s; redis %s", what, redis_url)
        yield Servers(kafka, redis_url, kind, what)


def _stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Arrival:
    """One enriched record as a downstream reader saw it."""

    seen_at: float  # wall clock when the read_committed consumer got it
    event_time: float | None  # the review's ``timestamp``
    review_id: str
    processed_at: float | None = None  # the record's ``processed_at``: the model's output was ready
    produced_at: float | None = None  # the enriched message's CreateTime: produced inside the transaction


class EnrichedTail:
    """Reads an output topic from the beginning with ``read_committed`` in a thread, stamping arrivals.

    Arrival time is when a downstream consumer could see the record: after the worker's transaction
    committed, plus this reader's fetch delay (``fetch.wait.max.ms`` 10, so a few ms at most).
    """

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self._arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"tail-{topic}", daemon=True)

    def start(self) -> EnrichedTail:
        self._thread.start()
        if not self._ready.wait(30):
            raise BenchError(f"could not start reading {self.topic}: {self._error}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> EnrichedTail:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, TopicPartition

        from reviews_mtl.kafka import make_consumer

        try:
            consumer = make_consumer(
                self.kafka,
                f"bench-tail-{uuid.uuid4().hex[:8]}",
                **{"isolation.level": "read_committed", "fetch.wait.max.ms": 10, "fetch.min.bytes": 1,
                   "enable.partition.eof": False},
            )
            metadata = consumer.list_topics(self.topic, timeout=20)
            partitions = sorted(metadata.topics[self.topic].partitions)
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
        except BaseException as exc:
            self._error = exc
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                messages = consumer.consume(num_messages=10_000, timeout=0.05)
                if not messages:
                    continue
                now = time.time()
                batch: list[Arrival] = []
                for m in messages:
                    if m.error() is not None:
                        continue
                    value = m.value()
                    if not value:
                        continue
                    record = json.loads(value)
                    ts, done = record.get("timestamp"), record.get("processed_at")
                    kind, created_ms = m.timestamp()
                    batch.append(Arrival(
                        now,
                        float(ts) if ts is not None else None,
                        str(record.get("review_id")),
                        float(done) if done is not None else None,
                        created_ms / 1000.0 if kind != TIMESTAMP_NOT_AVAILABLE else None,
                    ))
                with self._lock:
                    self._arrivals.extend(batch)
        except BaseException as exc:  # reported by wait_for
            self._error = exc
        finally:
            consumer.close()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._arrivals)

    def arrivals(self, start: int = 0) -> list[Arrival]:
        with self._lock:
            return self._arrivals[start:]

    def wait_for(
        self,
        total: int,
        timeout_s: float,
        workers: Sequence[subprocess.Popen[bytes]] = (),
        logs: Sequence[Path] = (),
        desc: str = "enriched",
        start: int = 0,
    ) -> None:
        """Block until ``total`` records arrived; fail early when a worker dies or the reader broke."""
        from tqdm import tqdm

        deadline = time.monotonic() + timeout_s
        with tqdm(total=total - start, desc=desc, unit="rec", disable=None, leave=False) as bar:
            while True:
                n = self.count
                bar.update(n - start - bar.n)
                if n >= total:
                    return
                if self._error is not None:
                    raise BenchError(f"reading {self.topic} failed: {self._error}")
                for w in workers:
                    if w.poll() is not None:
                        raise BenchError(f"a worker exited with {w.returncode}\n{tail_logs(logs)}")
                if time.monotonic() > deadline:
                    raise BenchError(f"only {n - start} of {total - start} records on {self.topic} after "
                                     f"{timeout_s:.0f}s\n{tail_logs(logs)}")
                time.sleep(0.05)


def _owned_partitions(log: Path) -> set[str]:
    """The partitions a worker owns now, replayed from its ``assigned``/``revoked``/``lost`` log lines."""
    owned: set[str] = set()
    if not log.exists():
        return owned
    for line in log.read_text(errors="replace").splitlines():
        for verb in ("assigned", "revoked", "lost"):
            marker = f" consumer.worker {verb} "
            if marker in line:
                parts = {x.strip() for x in line.split(marker, 1)[1].split(",")} - {"nothing"}
                owned = owned | parts if verb == "assigned" else owned - parts
    return owned


def tail_logs(logs: Iterable[Path], chars: int = 2000) -> str:
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-chars:]}" for p in logs if p.exists())


@dataclass
class Pipeline:
    """One isolated copy of the service on the bench servers (topics, group and key prefix of its own)."""

    servers: Servers
    log_dir: Path
    partitions: int = 6
    name: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:8]}")
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    worker_logs: list[Path] = field(default_factory=list)  # of the running workers, in start order

    def __post_init__(self) -> None:
        from reviews_mtl.kafka import create_topic

        self.input = f"{self.name}.reviews"
        self.enriched = f"{self.name}.enriched"
        self.dlq = f"{self.name}.dlq"
        self.alerts = f"{self.name}.alerts"
        self.group = f"{self.name}-group"
        self.prefix = self.name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        create_topic(self.servers.kafka, self.input, self.partitions)
        create_topic(self.servers.kafka, self.enriched, self.partitions)
        create_topic(self.servers.kafka, self.dlq, 1)
        create_topic(self.servers.kafka, self.alerts, 1)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.servers.kafka.bootstrap_servers,
            "REDIS_URL": self.servers.redis_url,
            "REDIS_KEY_PREFIX": self.prefix,
            "REVIEWS_TOPIC_INPUT": self.input,
            "REVIEWS_TOPIC_ENRICHED": self.enriched,
            "REVIEWS_TOPIC_DLQ": self.dlq,
            "REVIEWS_TOPIC_ALERTS": self.alerts,
            "REVIEWS_CONSUMER_GROUP_ID": self.group,
            "REVIEWS_CONSUMER_METRICS_PORT": "0",
            "REVIEWS_CONSUMER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        })
        return env

    def start_process(self, argv: Sequence[str], label: str,
                      env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{self.name}-{label}.log"
        self.logs.append(log)
        with log.open("wb") as fh:
            proc = subprocess.Popen(list(argv), env={**self.env(), **(env or {})}, stdout=fh,
                                    stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    def start_workers(
        self,
        model_dir: Path,
        replicas: int,
        *,
        threads: int,
        runtime: str = "auto",
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> list[subprocess.Popen[bytes]]:
        """``replicas`` real worker processes (``python -m consumer``) in this pipeline's group."""
        started = []
        for _ in range(replicas):
            started.append(self.start_process(
                [sys.executable, "-m", "consumer", "--model", str(model_dir), "--runtime", runtime,
                 "--threads", str(threads), *extra],
                f"worker{len(self.workers)}", env,
            ))
            self.worker_logs.append(self.logs[-1])
        return started

    def wait_until_balanced(self, timeout_s: float = 60.0) -> None:
        """Block until every running worker owns partitions and together they own all of them.

        Read from the workers' own ``assigned``/``revoked`` log lines (Tansu's DescribeGroups lists no
        members): a cooperative rebalance still moving partitions after the warm-up would otherwise stall
        the first measured records.
        """
        deadline = time.monotonic() + timeout_s
        expected = {f"{self.input}:{p}" for p in range(self.partitions)}
        while True:
            owned = [_owned_partitions(log) for log in self.worker_logs]
            union = set().union(*owned) if owned else set()
            if union == expected and all(owned[: self.partitions]):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"the group did not settle in {timeout_s:.0f}s: {[sorted(o) for o in owned]}")
            time.sleep(0.1)

    def stop_workers(self, timeout_s: float = 30.0) -> None:
        for p in self.workers:
            if p.poll() is None:
                p.terminate()  # SIGTERM: the worker finishes its batch and leaves the group
        for p in self.workers:
            try:
                p.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.workers.clear()
        self.worker_logs.clear()

    def tail(self) -> EnrichedTail:
        return EnrichedTail(self.servers.kafka, self.enriched)

    @contextlib.contextmanager
    def publisher(self) -> Iterator[Publisher]:
        """One long-lived producer, as an upstream service holds one: its start-up (metadata, producer id,
        about a second on Tansu) happens once before anything is timed, not inside the first records'
        latency. Raises :class:`BenchError` at the end if any delivery failed."""
        from producer.publisher import Publisher

        with Publisher(self.input, self.servers.kafka) as publisher:
            yield publisher
        if publisher.summary.failed:
            raise BenchError(f"publishing to {self.input}: {publisher.summary.failed} deliveries failed")

    def preload(self, reviews: Iterable[Review], publisher: Publisher | None = None) -> int:
        """Publish as fast as the producer goes; returns the records the broker acknowledged."""
        with contextlib.ExitStack() as stack:
            sender = publisher or stack.enter_context(self.publisher())
            before = sender.summary.sent
            for review in reviews:
                sender.send(review, timestamp_now=True)
            self._flush(sender)
            return sender.summary.sent - before

    def publish_at_rate(self, reviews: Iterable[Review], rate: float, publisher: Publisher) -> tuple[int, float]:
        """Publish at ``rate`` records/s with the producer's token bucket, each stamped with its send time.

        Returns (records acknowledged, seconds the sending took), so the achieved rate can be checked against
        the offered one.
        """
        from producer.publisher import TokenBucket

        bucket = TokenBucket(rate)
        before = publisher.summary.sent
        started = time.monotonic()
        for review in reviews:
            bucket.acquire()
            publisher.send(review, timestamp_now=True)
        seconds = time.monotonic() - started
        self._flush(publisher)
        return publisher.summary.sent - before, seconds

    def _flush(self, publisher: Publisher) -> None:
        if publisher.flush() or publisher.summary.failed:
            raise BenchError(f"publishing to {self.input}: {publisher.summary.failed} deliveries failed, "
                             f"{publisher.in_flight} unacknowledged")
