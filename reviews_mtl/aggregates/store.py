"""The owner of Redis: per-product aggregates, written once per micro-batch, read by the CLI and API.

Writes go through one server-side script (``apply_batch.lua``) that is atomic and idempotent per input
offset; see ``keys.py`` for the key schema.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NamedTuple, cast

import redis
from pydantic import BaseModel
from redis.backoff import NoBackoff
from redis.retry import Retry

from reviews_mtl.aggregates import keys
from reviews_mtl.aggregates.durability import DurabilityWait, wait_durable
from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS, published_rating
from reviews_mtl.settings import AnalyticsSettings, RedisSettings

_SCRIPT = resources.files("reviews_mtl.aggregates").joinpath("apply_batch.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class AppliedRecord:
    """What one message does to its product's aggregates: a review's contribution, or a delete of one."""

    offset: int
    review_id: str
    product_id: str
    sentiment: str  # "" for a delete
    rating: float
    aspects: Sequence[str]
    seen_at: float
    enriched: bytes  # the record as published (an enriched record or a retraction, JSON), kept for replays
    version: int | None = None
    event_time: float | None = None
    delete: bool = False
    # For the live quality of the model and the product's last reviews.
    true_rating: int | None = None
    model_version: str = ""
    text: str = ""
    predicted_at: float = 0.0
    stars: int | None = None  # the predicted stars, where the model gives a star distribution

    def payload(self, aspect_bits: dict[str, int]) -> dict[str, Any]:
        bucket, state_field = keys.review_state_address(self.product_id, self.review_id)
        return {
            "o": self.offset, "k": bucket, "f": state_field, "op": "d" if self.delete else "u",
            "v": "" if self.version is None else str(self.version),
            "e": "" if self.event_time is None else str(int(self.event_time)),
            "p": self.product_id, "s": self.sentiment, "r": published_rating(self.rating),
            "m": sum(aspect_bits[a] for a in self.aspects), "t": int(self.seen_at),
            "x": self.enriched.decode("utf-8"), "i": self.review_id,
            "q": "" if self.true_rating is None else str(self.true_rating), "mv": self.model_version,
            "txt": self.text[:RECENT_TEXT_CHARS], "pt": int(self.predicted_at),
            "ps": "" if self.stars is None else str(self.stars),
        }


# How much of a review's text the product's "last reviews" keep.
RECENT_TEXT_CHARS = 280


@dataclass(slots=True)
class PartitionBatch:
    """The part of one micro-batch that came from one input partition."""

    topic: str
    partition: int
    # The offset the worker's consumer started this partition from (its committed offset; -1 unknown) and the
    # topic's id ("" unknown): the script refuses the batch when Redis is behind Kafka or the topic changed.
    start: int = -1
    topic_id: str = ""
    first: int = -1  # the batch's first offset of this partition
    records: list[AppliedRecord] = field(default_factory=list)
    dead_offsets: list[int] = field(default_factory=list)
    # Published by an earlier attempt of this batch (at or below the watermark): not counted again, but kept in
    # the new copy, because this batch too may be replayed. ``carried_silent``: re-sends, by state address.
    carried: dict[int, bytes] = field(default_factory=dict)
    carried_silent: dict[int, str] = field(default_factory=dict)
    # Alerts an earlier attempt of this batch decided (kept in its copy): published again, never decided twice.
    carried_alerts: list[bytes] = field(default_factory=list)
    # Valid reviews the worker failed on (internal errors, dead-lettered) → why: a replay dead-letters them again
    # with the same reason instead of predicting them (Redis did not count them).
    failed: dict[int, str] = field(default_factory=dict)

    def payload(self, aspect_bits: dict[str, int]) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "start": self.start,
            "tid": self.topic_id,
            "first": self.first,
            "records": [r.payload(aspect_bits) for r in self.records],
            "dead": self.dead_offsets,
            "carried": [[o, b.decode("utf-8")] for o, b in self.carried.items()],
            "carried_silent": [[o, a] for o, a in self.carried_silent.items()],
            "failed": [[o, why] for o, why in self.failed.items()],
            "carried_alerts": [a.decode("utf-8") for a in self.carried_alerts],
        }


@dataclass(frozen=True, slots=True)
class Violation:
    """Why the aggregates of a partition cannot be trusted; nothing of its batch was applied."""

    topic: str
    partition: int
    # redis_behind: Redis lacks work Kafka committed; topic_changed: the topic was recreated; rebuild: a rebuild
    # is running; identity: the message at a replayed offset is not the one Redis counted there.
    reason: str
    detail: str = ""


class ApplyResult(NamedTuple):
    applied: int
    skipped: int
    dead_letters: int
    # Re-sends (neither new nor newer than what is counted), by (topic, partition): published nowhere.
    silent: dict[tuple[str, int], list[int]]
    edits: int = 0
    deletes: int = 0
    violations: tuple[Violation, ...] = ()
    # Alerts this batch raised (JSON records for the alerts topic).
    alerts: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class LastAppliedBatch:
    """The last applied batch of one partition: from which offset, what was published, and which offsets were
    re-sends (by their review's state address, to check a replay's identity)."""

    first: int
    records: dict[int, dict[str, Any]]
    silent: dict[int, str]
    failed: dict[int, str] = field(default_factory=dict)
    alerts: list[bytes] = field(default_factory=list)

    @classmethod
    def empty(cls) -> LastAppliedBatch:
        return cls(-1, {}, {})


class ProductAggregate(BaseModel):
    product_id: str
    review_count: int
    sentiment: dict[str, int]
    rating_sum: float
    rating_mean: float | None
    aspects: dict[str, int]
    aspect_sentiment: dict[str, dict[str, int]]
    first_seen: float | None
    last_seen: float | None

    @property
    def negative_share(self) -> float:
        return self.sentiment["negative"] / self.review_count if self.review_count else 0.0

    def top_aspects(self, n: int = 3) -> list[tuple[str, int]]:
        ranked = sorted(((a, c) for a, c in self.aspects.items() if c > 0), key=lambda ac: (-ac[1], ac[0]))
        return ranked[:n]


# How many ranked products one ``top`` query reads at most while looking for ones with enough reviews.
TOP_MAX_SCAN = 10_000


class TrendDay(BaseModel):
    day: str  # the bucket's start, UTC: YYYY-MM-DD for daily buckets, else YYYY-MM-DDTHH:MMZ
    start: float
    review_count: int
    sentiment: dict[str, int]
    rating_mean: float | None
    aspects: dict[str, int]
    complaints: dict[str, int]  # aspect mentions in negative reviews


class ProductTrend(BaseModel):
    product_id: str
    bucket_s: int
    days: list[TrendDay]


class QualityDay(BaseModel):
    """The model's live quality on one processing day, from reviews that carried their own stars."""

    model_version: str
    day: str
    predictions: int
    n: int  # predictions of reviews with stars
    rating_mae: float | None
    star5_accuracy: float | None
    sentiment_agreement: float | None
    predicted_sentiment: dict[str, float]  # shares of all predictions
    aspect_rates: dict[str, float]  # share of predictions that detect each aspect
    confusion: dict[str, dict[str, int]]  # sentiment from the stars -> predicted sentiment


def bucket_label(start: float, bucket_s: int) -> str:
    fmt = "%Y-%m-%d" if bucket_s % 86_400 == 0 else "%Y-%m-%dT%H:%MZ"
    return time.strftime(fmt, time.gmtime(start))


class RankedProduct(BaseModel):
    product_id: str
    value: float
    review_count: int


def connect(settings: RedisSettings) -> redis.Redis:
    """A client for ``settings``; the password may come from the URL or from ``REDIS_PASSWORD``."""
    password = settings.password.get_secret_value() if settings.password else None
    # No retries inside the client, whatever redis-py's default of the day: the worker's own loop retries a
    # whole batch script with backoff, and a hidden retry would only blur when Redis went away.
    kwargs: dict[str, Any] = {"socket_timeout": settings.socket_timeout_s,
                              "socket_connect_timeout": settings.socket_timeout_s,
                              "retry": Retry(NoBackoff(), 0), "retry_on_timeout": False}
    if password is not None:
        kwargs["password"] = password
    return redis.Redis.from_url(settings.url.get_secret_value(), **kwargs)


class AggregateStore:
    def __init__(self, client: redis.Redis, prefix: str = "rmtl", analytics: AnalyticsSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.prefix = prefix
        self.analytics = analytics if analytics is not None else AnalyticsSettings()
        self.clock = clock
        self._apply = client.register_script(_SCRIPT)
        self._aspect_bits = {name: 1 << i for i, name in enumerate(ASPECT_NAMES)}
        # Set by the worker at start (consumer.app): what to wait for after a batch, before its Kafka commit.
        self.durability_wait: DurabilityWait | None = None

    @classmethod
    def from_settings(cls, settings: RedisSettings, analytics: AnalyticsSettings | None = None) -> AggregateStore:
        return cls(connect(settings), settings.key_prefix, analytics)

    # -- write side ---------------------------------------------------------------------------------

    def apply_batch(self, parts: Iterable[PartitionBatch], *, lock: str = "", alerts: bool = True) -> ApplyResult:
        """Apply a micro-batch atomically; records at or below a partition's watermark are skipped.

        A part with nothing in it still runs the checks (``start``, ``topic_id``): that is how a worker checks a
        partition it was just assigned. ``lock`` is the token of a rebuild, the one writer allowed during it;
        ``alerts=False`` decides no alert (a rebuild replays history: its alerts were raised when it happened).
        """
        payload = [p.payload(self._aspect_bits) for p in parts]
        if not payload:
            return ApplyResult(0, 0, 0, {})
        options = {"aspects": ASPECT_NAMES, "lock": lock, "now": self.clock(), "alerts": alerts,
                   **self.analytics.script_options()}
        raw = cast(bytes, self._apply(args=[self.prefix, json.dumps(payload), json.dumps(options)]))
        doc = json.loads(raw)
        if self.durability_wait is not None and not doc["violations"] and any(p["records"] or p["dead"]
                                                                              for p in payload):
            wait_durable(self.client, self.durability_wait)
        silent: dict[tuple[str, int], list[int]] = {}
        for field_name, offsets in doc["silent"].items():
            topic, _, partition = field_name.rpartition(":")
            silent[(topic, int(partition))] = [int(o) for o in offsets]
        violations = tuple(
            Violation(v["topic"], int(v["partition"]), v["reason"],
                      f"watermark {v['watermark']}" + (f", stored topic id {v['stored']}" if v["stored"] else ""))
            for v in doc["violations"]
        )
        raised = tuple(json.dumps(a, separators=(",", ":")).encode() for a in doc.get("alerts", []))
        return ApplyResult(int(doc["applied"]), int(doc["skipped"]), int(doc["dead"]), silent,
                           int(doc["edits"]), int(doc["deletes"]), violations, raised)

    def watermarks(self) -> dict[tuple[str, int], int]:
        raw = cast(dict[bytes, bytes], self.client.hgetall(keys.watermarks_key(self.prefix)))
        out: dict[tuple[str, int], int] = {}
        for k, v in raw.items():
            topic, _, partition = k.decode().rpartition(":")
            out[(topic, int(partition))] = int(v)
        return out

    def watermarks_for(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Highest applied offset of each partition (-1 when none), in one round trip."""
        if not partitions:
            return {}
        fields = [keys.partition_field(t, p) for t, p in partitions]
        values = cast(list[bytes | None], self.client.hmget(keys.watermarks_key(self.prefix), fields))
        return {tp: int(v) if v is not None else -1 for tp, v in zip(partitions, values, strict=True)}

    def last_applied_batch(self, topic: str, partition: int) -> LastAppliedBatch:
        """The last batch applied for a partition, reused when that batch is replayed."""
        raw = cast(bytes | None, self.client.get(keys.inflight_key(self.prefix, topic, partition)))
        if not raw:
            return LastAppliedBatch.empty()
        doc = json.loads(raw)
        records = {int(o): rec for o, rec in doc["records"].items()}
        if "first" not in doc:  # written before edits and deletes: duplicates then were dead letters
            return LastAppliedBatch(min([*records, *doc.get("duplicates", [])], default=-1), records, {})
        return LastAppliedBatch(int(doc["first"]), records, {int(o): a for o, a in doc["silent"].items()},
                                {int(o): why for o, why in doc.get("failed", {}).items()},
                                [json.dumps(a, separators=(",", ":")).encode() for a in doc.get("alerts", [])])

    # -- read side ----------------------------------------------------------------------------------

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def product(self, product_id: str) -> ProductAggregate | None:
        raw = cast(dict[bytes, bytes], self.client.hgetall(keys.product_key(self.prefix, product_id)))
        return _to_aggregate(product_id, raw) if raw else None

    def products(self, offset: int = 0, limit: int = 50) -> list[ProductAggregate]:
        """Products by review count, most reviewed first."""
        ids = cast(list[bytes], self.client.zrevrange(
            keys.rank_key(self.prefix, "review_count"), offset, offset + limit - 1))
        return self._many([i.decode() for i in ids])

    def product_count(self) -> int:
        count: Any = self.client.zcard(keys.rank_key(self.prefix, "review_count"))
        return int(count)

    def totals(self) -> dict[str, int]:
        raw = cast(dict[bytes, bytes], self.client.hgetall(keys.totals_key(self.prefix)))
        return {k.decode(): int(v) for k, v in raw.items()}

    def top(self, by: str, n: int = 10, min_reviews: int = 3, offset: int = 0) -> list[RankedProduct]:
        """The ``n`` highest products of a ranking among those with at least ``min_reviews`` reviews (skipping the
        first ``offset`` of them), looked for among the ranking's first :data:`TOP_MAX_SCAN` members (one request
        never scans a whole catalogue)."""
        by = keys.parse_ranking(by)
        if n < 1 or offset < 0:
            raise ValueError("n must be at least 1 and offset at least 0")
        n += offset
        rank = keys.rank_key(self.prefix, by)
        counts_key = keys.rank_key(self.prefix, "review_count")
        out: list[RankedProduct] = []
        start, page = 0, max(4 * n, 50)
        while len(out) < n and start < TOP_MAX_SCAN:
            rows = cast(list[tuple[bytes, float]],
                        self.client.zrevrange(rank, start, start + page - 1, withscores=True))
            if not rows:
                break
            pipe = self.client.pipeline(transaction=False)
            for member, _ in rows:
                pipe.zscore(counts_key, member)
            counts = pipe.execute()
            for (member, score), count in zip(rows, counts, strict=True):
                if count is not None and count >= min_reviews:
                    out.append(RankedProduct(product_id=member.decode(), value=score, review_count=int(count)))
                    if len(out) == n:
                        break
            start += page
        return out[offset:]

    def bucket_s(self) -> int:
        """The bucket size this prefix was started with (the settings' until its first batch)."""
        stored = self.client.hget(keys.meta_key(self.prefix), "bucket_s")
        return int(float(stored)) if stored is not None else self.analytics.bucket_s

    def trend(self, product_id: str, days: int = 30, end: float | None = None) -> ProductTrend:
        """The last ``days`` buckets up to the one holding ``end`` (default now), oldest first, zeros where a
        bucket holds no review (or has expired)."""
        size = self.bucket_s()
        last = int((self.clock() if end is None else end) // size) * size
        starts = [last - size * i for i in range(days - 1, -1, -1)]
        pipe = self.client.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(keys.day_key(self.prefix, product_id, start))
        rows = []
        for start, raw in zip(starts, pipe.execute(), strict=True):
            h = {k.decode(): v.decode() for k, v in raw.items()}
            n = int(h.get("review_count", 0))
            rows.append(TrendDay(
                day=bucket_label(start, size), start=float(start), review_count=n,
                sentiment={label: int(h.get(f"sentiment:{label}", 0)) for label in SENTIMENT_LABELS},
                rating_mean=float(h["rating_sum"]) / n if n > 0 and "rating_sum" in h else None,
                aspects={a: int(h.get(f"aspect:{a}", 0)) for a in ASPECT_NAMES},
                complaints={a: int(h.get(f"aspect:{a}:negative", 0)) for a in ASPECT_NAMES},
            ))
        return ProductTrend(product_id=product_id, bucket_s=size, days=rows)

    def recent_reviews(self, product_id: str) -> list[dict[str, Any]]:
        """The product's last reviews with their predictions, newest first (a few, kept by the worker)."""
        raw = cast(list[bytes], self.client.lrange(keys.recent_key(self.prefix, product_id), 0, -1))
        return [json.loads(item) for item in raw]

    def alerts(self, product_id: str | None = None, n: int = 20) -> list[dict[str, Any]]:
        """The latest alerts (of one product, or of all), newest first."""
        key = keys.alerts_key(self.prefix, product_id)
        return [json.loads(item) for item in cast(list[bytes], self.client.lrange(key, 0, n - 1))]

    def products_by_id(self, product_ids: Sequence[str]) -> list[ProductAggregate]:
        """These products' aggregates, in this order (unknown ids left out)."""
        return self._many(product_ids)

    def search_count(self, prefix: str) -> int:
        low, high = _lex_range(prefix)
        return int(self.client.zlexcount(keys.products_index_key(self.prefix), low, high))

    def search(self, prefix: str, offset: int = 0, limit: int = 20) -> list[str]:
        """Product ids starting with ``prefix``, in byte order (the product index is one sorted set)."""
        low, high = _lex_range(prefix)
        found = cast(list[bytes], self.client.zrangebylex(keys.products_index_key(self.prefix), low, high,
                                                          start=offset, num=limit))
        return [p.decode("utf-8") for p in found]

    def quality(self, days: int = 30) -> list[QualityDay]:
        """The model's live quality per model version and processing day (newest day first)."""
        size = self.bucket_s()
        last = int(self.clock() // size) * size
        versions = sorted(v.decode() for v in cast(set[bytes], self.client.smembers(
            keys.quality_versions_key(self.prefix))))
        wanted = [(v, last - size * i) for v in versions for i in range(days)]
        pipe = self.client.pipeline(transaction=False)
        for version, start in wanted:
            pipe.hgetall(keys.quality_key(self.prefix, version, start))
        out = []
        for (version, start), raw in zip(wanted, pipe.execute(), strict=True):
            if raw:
                out.append(_to_quality(version, bucket_label(start, size), {k.decode(): v.decode()
                                                                             for k, v in raw.items()}))
        return sorted(out, key=lambda q: (q.day, q.model_version), reverse=True)

    def _many(self, product_ids: Sequence[str]) -> list[ProductAggregate]:
        pipe = self.client.pipeline(transaction=False)
        for pid in product_ids:
            pipe.hgetall(keys.product_key(self.prefix, pid))
        return [_to_aggregate(pid, raw) for pid, raw in zip(product_ids, pipe.execute(), strict=True) if raw]


def _lex_range(prefix: str) -> tuple[bytes, bytes]:
    """ZRANGEBYLEX bounds of the members starting with ``prefix`` (every member for "")."""
    if not prefix:
        return b"-", b"+"
    raw = prefix.encode("utf-8")
    return b"[" + raw, b"[" + raw + b"\xff"


def _to_quality(version: str, day: str, h: dict[str, str]) -> QualityDay:
    predictions = int(h.get("predictions", 0))
    n = int(h.get("n", 0))

    def share(count: str | None, whole: int) -> float | None:
        return round(int(count or 0) / whole, 4) if whole else None

    return QualityDay(
        model_version=version, day=day, predictions=predictions, n=n,
        rating_mae=round(float(h.get("abs_err_sum", 0)) / n, 4) if n else None,
        star5_accuracy=share(h.get("star_hits"), n), sentiment_agreement=share(h.get("sentiment_hits"), n),
        predicted_sentiment={label: share(h.get(f"pred:{label}"), predictions) or 0.0 for label in SENTIMENT_LABELS},
        aspect_rates={a: share(h.get(f"aspect:{a}"), predictions) or 0.0 for a in ASPECT_NAMES},
        confusion={t: {p: int(h.get(f"confusion:{t}:{p}", 0)) for p in SENTIMENT_LABELS} for t in SENTIMENT_LABELS},
    )


def _to_aggregate(product_id: str, raw: dict[bytes, bytes]) -> ProductAggregate:
    h = {k.decode(): v.decode() for k, v in raw.items()}
    count = int(h.get("review_count", 0))
    rating_sum = float(h.get("rating_sum", 0.0))
    return ProductAggregate(
        product_id=product_id,
        review_count=count,
        sentiment={label: int(h.get(f"sentiment:{label}", 0)) for label in SENTIMENT_LABELS},
        rating_sum=rating_sum,
        rating_mean=rating_sum / count if count else None,
        aspects={a: int(h.get(f"aspect:{a}", 0)) for a in ASPECT_NAMES},
        aspect_sentiment={
            a: {label: int(h.get(f"aspect:{a}:{label}", 0)) for label in SENTIMENT_LABELS} for a in ASPECT_NAMES
        },
        first_seen=float(h["first_seen"]) if "first_seen" in h else None,
        last_seen=float(h["last_seen"]) if "last_seen" in h else None,
    )
