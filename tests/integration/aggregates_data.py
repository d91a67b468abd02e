"""Known aggregates for the read-side tests, written through the store's own write path (``apply_batch``)
into a real Redis under a unique key prefix, with the expected values recounted here in Python."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from reviews_mtl.aggregates.store import AggregateStore, AppliedRecord, PartitionBatch
from reviews_mtl.contracts import ASPECT_NAMES
from reviews_mtl.settings import KafkaSettings

# (product, [(sentiment, predicted rating, aspects), ...]): shapes chosen so every ranking has a clear order.
PRODUCTS: dict[str, list[tuple[str, float, tuple[str, ...]]]] = {
    "asin:B000GOOD": [("positive", 4.8, ("quality", "value_for_money"))] * 6 + [("neutral", 3.1, ("price",))] * 2,
    "asin:B000BAD": [("negative", 1.4, ("durability", "quality"))] * 4 + [("positive", 4.2, ())],
    "kettle/v2": [("negative", 2.0, ("shipping",))] * 2 + [("neutral", 3.0, ("shipping", "price"))] * 2,
    "lonely": [("negative", 1.0, ("price",))],  # one review: must not top share rankings at min_reviews=3
}


@dataclass
class Expected:
    prefix: str
    review_count: dict[str, int] = field(default_factory=dict)
    sentiment: dict[str, Counter[str]] = field(default_factory=dict)
    rating_mean: dict[str, float] = field(default_factory=dict)
    aspects: dict[str, Counter[str]] = field(default_factory=dict)
    complaints: dict[str, Counter[str]] = field(default_factory=dict)

    def share(self, product: str, label: str) -> float:
        return self.sentiment[product][label] / self.review_count[product]


def fill(client: redis.Redis, topic: str = "reviews") -> tuple[AggregateStore, Expected]:
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    store = AggregateStore(client, prefix=prefix)
    expected = Expected(prefix)
    records: list[AppliedRecord] = []
    offset = 0
    ratings: dict[str, list[float]] = defaultdict(list)
    for product, reviews in PRODUCTS.items():
        expected.sentiment[product] = Counter()
        expected.aspects[product] = Counter()
        expected.complaints[product] = Counter()
        for i, (sentiment, rating, aspects) in enumerate(reviews):
            review_id = f"{product}#{i}"
            enriched = json.dumps({"review_id": review_id, "product_id": product}).encode()
            records.append(
                AppliedRecord(offset, review_id, product, sentiment, rating, aspects, 1.7e9 + offset, enriched)
            )
            offset += 1
            expected.sentiment[product][sentiment] += 1
            ratings[product].append(rating)
            for a in aspects:
                expected.aspects[product][a] += 1
                if sentiment == "negative":
                    expected.complaints[product][a] += 1
        expected.review_count[product] = len(reviews)
        expected.rating_mean[product] = sum(ratings[product]) / len(reviews)
    # Two batches on two partitions, as the worker would apply them.
    store.apply_batch([PartitionBatch(topic, 0, records=records[: len(records) // 2])])
    store.apply_batch([PartitionBatch(topic, 1, records=records[len(records) // 2 :])])
    assert set(ASPECT_NAMES) >= {a for c in expected.aspects.values() for a in c}
    return store, expected


# -- a real run: reviews-mtl produce -> reviews-mtl consume -> Redis and the enriched topic ----------------


RARE_PRODUCT = "rare-product"


@dataclass
class RealRun:
    """The aggregates and enriched records of one finished real run on the test servers."""

    pipeline: Any
    records: list[dict[str, Any]]

    @property
    def store(self) -> AggregateStore:
        return self.pipeline.store  # type: ignore[no-any-return]

    @property
    def env(self) -> dict[str, str]:
        return self.pipeline.env()  # type: ignore[no-any-return]


def real_run(
    kafka: KafkaSettings, redis_url: str, model_dir: Path, workdir: Path, *, reviews: int = 240, products: int = 9
) -> RealRun:
    """Publish ``reviews`` reviews with ``reviews-mtl produce`` and enrich them with ``reviews-mtl consume``,
    on unique topics and a unique Redis key prefix; returns once Redis and the enriched topic have them all."""
    from tests.integration.consumer_harness import TEXTS, Pipeline

    pipe = Pipeline(kafka, redis_url, model_dir, partitions=3)
    path = workdir / "reviews.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(reviews):
            # Products see different mixes of texts, so rankings are not all ties.
            text = TEXTS[(i * (1 + i % products)) % len(TEXTS)]
            # The last two reviews go to a product of their own, which min_reviews=3 must leave out.
            product = f"prod-{i % products}" if i < reviews - 2 else RARE_PRODUCT
            # Event times spread over the last 20 days, for the per-day trend.
            stamp = int(time.time()) - (i % 20) * 86_400 - 60
            fh.write(json.dumps({"review_id": f"r{i}", "product_id": product, "text": f"{text} #{i}",
                                 "timestamp": stamp}))
            fh.write("\n")
    env = pipe.env()
    produced = subprocess.run(
        [sys.executable, "-m", "reviews_mtl.cli", "produce", "--input", str(path), "--no-progress", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert produced.returncode == 0, produced.stderr
    assert json.loads(produced.stdout)["sent"] == reviews

    log = workdir / "consume.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "reviews_mtl.cli", "consume", "--threads", "1"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    pipe.procs.append(worker)
    pipe.logs.append(log)
    try:
        pipe.wait_until(lambda: pipe.store.totals().get("reviews", 0) >= reviews, 240, "all reviews in Redis")
        pipe.wait_until(lambda: len(pipe.enriched_records()) >= reviews, 60, "committed enriched records")
    finally:
        codes = pipe.stop_all()
    assert codes == [0], pipe.tail_logs()
    return RealRun(pipe, pipe.enriched_records())


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server on a free loopback port; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
