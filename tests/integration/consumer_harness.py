"""Helpers to run real worker processes against the test broker and Redis and check the invariants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from reviews_mtl.aggregates.store import AggregateStore
from reviews_mtl.contracts import ASPECT_NAMES, DeadLetter, Review
from reviews_mtl.kafka import create_topic, make_producer, read_topic
from reviews_mtl.settings import KafkaSettings

TEXTS = [
    "The sound quality is excellent and it was cheap. Great value for money.",
    "Arrived late and the box was crushed. The strap broke after a week.",
    "It's okay. Does the job, nothing special about the design.",
    "Terrible customer service, they never answered my emails about the refund.",
    "Very easy to set up and use, works perfectly every time.",
    "Overpriced for what you get, and the plastic feels cheap.",
    "Beautiful finish, looks great on my desk, battery lasts for days.",
    "Stopped working after two months. Waste of money.",
]


@dataclass
class Pipeline:
    """One isolated pipeline: unique topics, group and Redis key prefix on the shared servers."""

    kafka: KafkaSettings
    redis_url: str
    model_dir: Path
    partitions: int = 4
    replication_factor: int = 1
    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input = f"{self.name}.reviews"
        self.enriched = f"{self.name}.enriched"
        self.dlq = f"{self.name}.dlq"
        self.alerts = f"{self.name}.alerts"
        self.group = f"{self.name}-group"
        self.prefix = f"{self.name}"
        rf = self.replication_factor
        create_topic(self.kafka, self.input, self.partitions, rf)
        create_topic(self.kafka, self.enriched, self.partitions, rf)
        create_topic(self.kafka, self.dlq, 1, rf)
        create_topic(self.kafka, self.alerts, 1, rf)
        self.store = AggregateStore(redis.Redis.from_url(self.redis_url), prefix=self.prefix)
        self.logs: list[Path] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.prefix,
            "REVIEWS_TOPIC_INPUT": self.input,
            "REVIEWS_TOPIC_ENRICHED": self.enriched,
            "REVIEWS_TOPIC_DLQ": self.dlq,
            "REVIEWS_TOPIC_ALERTS": self.alerts,
            "REVIEWS_CONSUMER_GROUP_ID": self.group,
            "REVIEWS_CONSUMER_MODEL_DIR": str(self.model_dir),
            "REVIEWS_CONSUMER_METRICS_PORT": "0",
            "REVIEWS_CONSUMER_BATCH_MAX_WAIT_MS": "100",
            "REVIEWS_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        })
        env.update(self.extra_env)
        return env

    def start_worker(self, *extra: str, threads: int = 1) -> subprocess.Popen[bytes]:
        log = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"{self.name}-w{len(self.procs)}.log"
        self.logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "consumer", "--threads", str(threads), *extra],
            env=self.env(), stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self, timeout_s: float = 30.0) -> list[int]:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=timeout_s))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        return codes

    def wait_for_log(self, proc: subprocess.Popen[bytes], text: str, timeout_s: float = 120.0) -> None:
        """Wait until a worker's log contains ``text`` (e.g. ``assigned``: it has joined the group)."""
        log = self.logs[self.procs.index(proc)]
        self.wait_until(lambda: log.exists() and text in log.read_text(errors="replace"), timeout_s,
                        f"{text!r} in {log}")

    def tail_logs(self) -> str:
        return "\n".join(f"--- {log}\n" + log.read_text(errors="replace")[-3000:] for log in self.logs if log.exists())

    def produce(self, values: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        producer = make_producer(self.kafka)
        n = 0
        for key, value in values:
            producer.produce(self.input, key=key, value=value)
            n += 1
            if n % 1000 == 0:
                producer.poll(0)
        assert producer.flush(30) == 0
        return n

    def enriched_records(self) -> list[dict[str, Any]]:
        return [json.loads(m.value() or b"") for m in read_topic(self.kafka, self.enriched, timeout_s=30)]

    def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter.from_headers(m.headers(), m.value()) for m in read_topic(self.kafka, self.dlq, timeout_s=30)]

    def wait_until(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if done():
                    return
            except Exception as exc:  # a read racing a leader election: try again until the deadline
                last_error = exc
            for p in self.procs:
                if p.poll() not in (None, 0, -9, -15):
                    raise AssertionError(f"a worker died with {p.returncode}\n{self.tail_logs()}")
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what} (last error: {last_error})\n{self.tail_logs()}")

    def committed_reviews(self) -> int:
        totals = self.store.totals()
        return totals.get("reviews", 0)


def make_reviews(n: int, products: int = 12, start: int = 0, spread_days: float = 0.0) -> list[Review]:
    """``n`` reviews over ``products`` products; event times now, or spread evenly over the last ``spread_days``."""
    now = time.time()
    return [
        Review(review_id=f"r{i}", product_id=f"p{i % products}", text=TEXTS[i % len(TEXTS)] + f" (#{i})",
               timestamp=now - spread_days * 86_400 * ((i * 7919) % n) / n if spread_days else now)
        for i in range(start, start + n)
    ]


def keyed(reviews: Iterable[Review]) -> Iterable[tuple[bytes, bytes]]:
    return ((r.product_id.encode(), r.to_bytes()) for r in reviews)


def current_reviews(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """What the enriched topic says is counted now, read in order: the last record of each review, unless a
    retraction (``op: delete``) came after it. A review's records share its product's partition, so their order
    in the topic is the order they were applied in."""
    current: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (r["product_id"], r["review_id"])
        if r.get("op") == "delete":
            current.pop(key, None)
        else:
            current[key] = r
    return current


def assert_aggregates_match_recount(store: AggregateStore, records: list[dict[str, Any]]) -> None:
    """Every product's aggregates equal a recount of the enriched topic (edits replace, deletes retract)."""
    count: Counter[str] = Counter()
    sentiment: dict[str, Counter[str]] = defaultdict(Counter)
    aspects: dict[str, Counter[str]] = defaultdict(Counter)
    rating: dict[str, float] = defaultdict(float)
    for r in current_reviews(records).values():
        pid = r["product_id"]
        count[pid] += 1
        sentiment[pid][r["sentiment"]["label"]] += 1
        rating[pid] += r["rating"]
        aspects[pid].update(r["aspects_detected"])
    assert store.product_count() == len(count)
    for pid, n in count.items():
        agg = store.product(pid)
        assert agg is not None, pid
        assert agg.review_count == n, pid
        assert agg.sentiment == {k: sentiment[pid][k] for k in ("negative", "neutral", "positive")}, pid
        assert agg.aspects == {a: aspects[pid][a] for a in ASPECT_NAMES}, pid
        assert abs(agg.rating_sum - rating[pid]) < 1e-3 * n, pid


def assert_trends_match_recount(store: AggregateStore, records: list[dict[str, Any]], days: int) -> None:
    """Every product's per-day buckets equal a recount of the enriched topic grouped by event day."""
    by_day: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for r in current_reviews(records).values():
        stamp = r.get("timestamp") or r["processed_at"]
        day = by_day[r["product_id"]][time.strftime("%Y-%m-%d", time.gmtime(stamp))]
        day["reviews"] += 1
        day[r["sentiment"]["label"]] += 1
        day.update(f"aspect:{a}" for a in r["aspects_detected"])
    for pid, expected in by_day.items():
        got: dict[str, Counter[str]] = {}
        for d in store.trend(pid, days=days).days:
            aspects = {f"aspect:{a}": c for a, c in d.aspects.items()}
            counts = Counter({"reviews": d.review_count, **d.sentiment, **aspects})
            if +counts:
                got[d.day] = +counts
        assert got == {day: +c for day, c in expected.items()}, pid
