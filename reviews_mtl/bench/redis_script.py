"""What one Redis absorbs: the aggregate script's own ceiling, and the memory the aggregates take.

Synthetic enriched reviews (realistic ids and record sizes, products drawn with a long tail) are applied through
``AggregateStore.apply_batch`` in the worker's batch shape, on a Redis of its own. Reported: reviews/s end to end
(client serialization + script) and inside Redis (``INFO commandstats``), batch time percentiles, and memory: in
all per review, the contribution state of edits and deletes per review (``P:rev:*``, beside the per-product sets of
review ids the script kept before, measured in the same run as the baseline), per product (hash, rankings, last
reviews) and per product-day bucket.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from tqdm import tqdm

from reviews_mtl.aggregates.store import AggregateStore, AppliedRecord, PartitionBatch
from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS

DAY_S = 86_400.0


@contextmanager
def _redis(url: str | None) -> Iterator[tuple[redis.Redis, bool]]:
    """The given Redis, or one of our own (so memory deltas are ours alone); says whether it is ours."""
    if url is not None:
        yield redis.Redis.from_url(url), False
        return
    from reviews_mtl.stack.processes import free_port
    from reviews_mtl.stack.redis_server import start_redis

    with tempfile.TemporaryDirectory(prefix="reviews-bench-redis-") as tmp:
        port = free_port()
        process = start_redis(port, Path(tmp), Path(tmp) / "redis.log", die_with_parent=True)
        try:
            yield redis.Redis.from_url(f"redis://127.0.0.1:{port}/0"), True
        finally:
            process.kill()
            process.wait()


def _record_template() -> dict[str, Any]:
    """An enriched record of realistic size (what the script keeps in its copy of the last batch)."""
    return {"schema_version": 1, "review_id": "", "product_id": "",
            "sentiment": {"label": "positive", "confidence": 0.91,
                          "probabilities": {"negative": 0.03, "neutral": 0.06, "positive": 0.91}},
            "rating": 4.62, "aspects": {a: 0.12 for a in ASPECT_NAMES}, "aspects_detected": ["quality"],
            "timestamp": 1.7e9, "model_name": "reviews-mtl-full", "model_version": "2026-12-01T00:00:00Z",
            "model_runtime": "onnx-int8", "processed_at": 1.7e9, "processing_ms": 4.1,
            "source": {"topic": "reviews", "partition": 0, "offset": 0}}


def _batches(reviews: int, products: int, batch: int, partitions: int, seed: int
             ) -> Iterator[tuple[list[PartitionBatch], list[tuple[str, str]]]]:
    rnd = random.Random(seed)
    template = _record_template()
    offsets = [0] * partitions
    start = 1.7e9
    done = 0
    while done < reviews:
        n = min(batch, reviews - done)
        p = (done // batch) % partitions
        records, ids = [], []
        for i in range(n):
            k = done + i
            # A long tail: a few products get most reviews, as in real catalogues.
            pid = f"B{int(products * rnd.random() ** 3):09d}"
            rid = f"R{k:013d}"
            sentiment = rnd.choices(SENTIMENT_LABELS, weights=(2, 1, 6))[0]
            aspects = tuple(rnd.sample(ASPECT_NAMES, rnd.choice((0, 1, 1, 2, 3))))
            ts = start + DAY_S * 90 * rnd.random()
            body = dict(template, review_id=rid, product_id=pid, timestamp=ts,
                        source={"topic": "reviews", "partition": p, "offset": offsets[p] + i})
            records.append(AppliedRecord(offset=offsets[p] + i, review_id=rid, product_id=pid, sentiment=sentiment,
                                         rating=1.0 + 4.0 * rnd.random(), aspects=aspects, seen_at=ts,
                                         enriched=json.dumps(body, separators=(",", ":")).encode(), event_time=ts))
            ids.append((pid, rid))
        yield [PartitionBatch("reviews", p, first=offsets[p], records=records)], ids
        offsets[p] += n
        done += n


def _memory_of(client: redis.Redis, pattern: str) -> tuple[int, int]:
    """Bytes and number of the keys matching ``pattern``."""
    total = count = 0
    batch: list[bytes] = []

    def flush() -> int:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        return sum(int(x or 0) for x in pipe.execute())

    for key in client.scan_iter(match=pattern, count=10_000):
        batch.append(key)
        if len(batch) == 5000:
            total, count, batch = total + flush(), count + len(batch), []
    if batch:
        total, count = total + flush(), count + len(batch)
    return total, count


def _script_usec(client: redis.Redis) -> float:
    stats: dict[str, Any] = client.info("commandstats")
    return float(sum(v.get("usec", 0) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")))


def measure_redis_script(redis_url: str | None = None, reviews: int = 1_000_000, products: int = 100_000,
                         batch: int = 256, partitions: int = 6, seed: int = 0, progress: bool = True
                         ) -> dict[str, Any]:
    """Apply ``reviews`` synthetic reviews through the real script and measure speed and memory."""
    with _redis(redis_url) as (client, ours):
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        store = AggregateStore(client, prefix=prefix)
        used_before = int(client.info("memory")["used_memory"])
        usec_before = _script_usec(client)
        seen_ids: list[tuple[str, str]] = []
        times: list[float] = []
        started = time.perf_counter()
        with tqdm(total=reviews, desc="redis script", unit=" reviews", disable=not progress) as bar:
            for parts, ids in _batches(reviews, products, batch, partitions, seed):
                t = time.perf_counter()
                store.apply_batch(parts)
                times.append(time.perf_counter() - t)
                seen_ids += ids
                bar.update(len(ids))
        wall = time.perf_counter() - started
        script_s = (_script_usec(client) - usec_before) / 1e6
        used_after = int(client.info("memory")["used_memory"])
        state, _ = _memory_of(client, f"{prefix}:rev:*")
        product, n_products = _memory_of(client, f"{prefix}:product:*")
        rankings, _ = _memory_of(client, f"{prefix}:rank:*")
        recent, _ = _memory_of(client, f"{prefix}:recent:*")
        days, n_days = _memory_of(client, f"{prefix}:day:*")
        copies, _ = _memory_of(client, f"{prefix}:inflight:*")

        # The baseline: the per-product sets of review ids the script kept before edits and deletes.
        base = f"baseline-{uuid.uuid4().hex[:8]}"
        for i in range(0, len(seen_ids), 10_000):
            pipe = client.pipeline(transaction=False)
            for pid, rid in seen_ids[i:i + 10_000]:
                pipe.sadd(f"{base}:seen:{pid}", rid)
            pipe.execute()
        baseline, _ = _memory_of(client, f"{base}:seen:*")
        if not ours:  # a Redis of the user's: leave it as it was
            for pattern in (f"{prefix}:*", f"{base}:*"):
                keys = list(client.scan_iter(match=pattern, count=10_000))
                for i in range(0, len(keys), 5000):
                    client.unlink(*keys[i:i + 5000])
    times.sort()
    return {
        "reviews": reviews,
        "products": n_products,
        "batch": batch,
        "reviews_per_s": round(reviews / wall, 1),
        "script_reviews_per_s": round(reviews / script_s, 1) if script_s else None,
        "batch_ms_p50": round(1000 * statistics.median(times), 2),
        "batch_ms_p99": round(1000 * times[int(0.99 * (len(times) - 1))], 2),
        "used_memory_bytes": used_after - used_before,
        "used_memory_bytes_per_review": round((used_after - used_before) / reviews, 1),
        "review_state_bytes_per_review": round(state / reviews, 1),
        "bytes_per_product": round((product + rankings + recent) / max(1, n_products), 1),
        "day_buckets": n_days,
        "bytes_per_product_day": round(days / max(1, n_days), 1),
        "last_batch_copies_bytes": copies,
        "baseline_seen_sets_bytes_per_review": round(baseline / reviews, 1),
        "review_state_over_baseline": round(state / baseline, 3) if baseline else None,
    }


def render_redis_script(r: dict[str, Any]) -> list[str]:
    return [
        "",
        f"Redis script ceiling: {r['reviews']:,} reviews over {r['products']:,} products, batches of {r['batch']}",
        f"  reviews/s through apply_batch (client + script): {r['reviews_per_s']:,.0f}; inside Redis: "
        f"{r['script_reviews_per_s'] or 0:,.0f}; batch p50 / p99: {r['batch_ms_p50']} / {r['batch_ms_p99']} ms",
        f"  memory: {r['used_memory_bytes_per_review']} B per review in all; the edit/delete state "
        f"{r['review_state_bytes_per_review']} B per review (the old per-product id sets: "
        f"{r['baseline_seen_sets_bytes_per_review']} B, ratio {r['review_state_over_baseline']}); "
        f"{r['bytes_per_product']:,.0f} B per product (hash, rankings, last reviews); "
        f"{r['bytes_per_product_day']:,.0f} B per product-day bucket ({r['day_buckets']:,} buckets)",
    ]
