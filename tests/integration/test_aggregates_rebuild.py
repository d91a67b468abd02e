"""``reviews-mtl aggregates rebuild`` and ``reset-topic`` against the real broker and Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reviews_mtl.aggregates import keys
from reviews_mtl.contracts import Retraction
from reviews_mtl.settings import KafkaSettings
from tests.integration.consumer_harness import Pipeline, assert_aggregates_match_recount, keyed, make_reviews

pytestmark = pytest.mark.integration


def _snapshot(pipe: Pipeline) -> dict[str, Any]:
    products = {p.product_id: p.model_dump() for p in pipe.store.products(limit=1000)}
    for p in products.values():
        p["rating_sum"] = round(p["rating_sum"], 2)
        p["rating_mean"] = round(p["rating_mean"], 3)
    return {"products": products, "totals": pipe.store.totals(), "watermarks": pipe.store.watermarks(),
            "top": [r.product_id for r in pipe.store.top("complaints:price", n=5, min_reviews=1)]}


def _cli(pipe: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reviews_mtl.cli", "aggregates", *args], env=pipe.env(),
                          capture_output=True, text=True, timeout=600)


def test_a_rebuild_from_kafka_restores_every_aggregate_and_watermark(
    kafka_settings: KafkaSettings, redis_url: str, demo_model_dir: Path
) -> None:
    pipe = Pipeline(kafka_settings, redis_url, demo_model_dir, partitions=3)
    reviews = make_reviews(300, products=20)
    edit = reviews[10].model_copy(update={"text": "It broke after a week.", "timestamp": (reviews[10].timestamp or 0)
                                          + 60})
    delete = Retraction(review_id=reviews[20].review_id, product_id=reviews[20].product_id)
    values = [*keyed(reviews), (b"p1", b"{not json"), *((r.product_id.encode(), r.to_bytes())
                                                        for r in (reviews[30], edit, delete))]
    pipe.produce(values)
    pipe.start_worker()
    try:
        pipe.wait_until(lambda: pipe.store.totals().get("messages", 0) >= len(values), 300, "every message")
    finally:
        assert pipe.stop_all() == [0], pipe.tail_logs()
    before = _snapshot(pipe)
    assert before["totals"]["resends"] == 1 and before["totals"]["edits"] == 1 and before["totals"]["deletes"] == 1

    # Redis loses everything the workers derived from Kafka.
    for pattern in keys.derived_key_patterns(pipe.prefix):
        for key in list(pipe.store.client.scan_iter(match=pattern)):
            pipe.store.client.delete(key)
    assert pipe.store.product_count() == 0

    done = _cli(pipe, "rebuild", "--settle-s", "0", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["enriched"], report["retractions"], report["dead_letters"], report["messages"]) == (
        301, 1, 1, len(values))
    after = _snapshot(pipe)
    assert after["totals"] == before["totals"]
    assert after == before
    assert_aggregates_match_recount(pipe.store, pipe.enriched_records())

    # The workers go on from there, counting nothing twice.
    more = make_reviews(30, products=20, start=300)
    pipe.produce(keyed(more))
    pipe.start_worker()
    try:
        pipe.wait_until(lambda: pipe.store.totals().get("messages", 0) >= len(values) + 30, 300, "the new reviews")
    finally:
        pipe.stop_all()
    assert pipe.store.totals()["reviews"] == before["totals"]["reviews"] + 30
    assert_aggregates_match_recount(pipe.store, pipe.enriched_records())


def test_a_second_rebuild_is_refused_while_one_holds_the_lock(
    kafka_settings: KafkaSettings, redis_url: str, demo_model_dir: Path
) -> None:
    pipe = Pipeline(kafka_settings, redis_url, demo_model_dir, partitions=1)
    pipe.store.client.hset(keys.meta_key(pipe.prefix), "rebuild", "someone-else")
    refused = _cli(pipe, "rebuild", "--settle-s", "0")
    assert refused.returncode == 1 and "another rebuild" in refused.stderr
    forced = _cli(pipe, "rebuild", "--settle-s", "0", "--force")
    assert forced.returncode == 0, forced.stderr
    assert pipe.store.client.hget(keys.meta_key(pipe.prefix), "rebuild") is None
