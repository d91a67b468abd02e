"""Known aggregates for the read-side tests, written through the store's own write path (``apply_batch``)
into a real Redis under a unique key prefix, with the expected values recounted here in Python."""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import redis

from reviews_mtl.aggregates.store import AggregateStore, AppliedRecord, PartitionBatch
from reviews_mtl.contracts import ASPECT_NAMES

# (product, [(sentiment, predicted rating, aspects), ...]): shapes chosen so every ranking has a clear order.
PRODUCTS: dict[str, list[tuple[str, float, tuple[str, ...]]]] = {
    "asin:B000GOOD": [("positive", 4.8, ("quality",))] * 6 + [("neutral", 3.1, ("price",))] * 2,
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
    store.apply_batch([PartitionBatch(topic, 0, records[: len(records) // 2])])
    store.apply_batch([PartitionBatch(topic, 1, records[len(records) // 2 :])])
    assert set(ASPECT_NAMES) >= {a for c in expected.aspects.values() for a in c}
    return store, expected
