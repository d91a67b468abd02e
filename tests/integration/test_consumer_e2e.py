"""The worker end to end through the real broker and Redis with a real trained model artifact.

N reviews in → exactly N enriched (read_committed), every bad message in the DLQ once with its reason,
aggregates equal to a recount of the enriched topic — also when a replica is SIGKILLed mid-run.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from reviews_mtl.contracts import Retraction
from reviews_mtl.settings import KafkaSettings
from tests.integration.consumer_harness import Pipeline, assert_aggregates_match_recount, keyed, make_reviews

pytestmark = pytest.mark.integration

BAD_INPUTS: list[tuple[bytes | None, str]] = [
    (b"{not json", "invalid_json"),
    (b"\xff\xfe\x00garbage", "invalid_utf8"),
    (b"", "empty_value"),
    (b"[1, 2]", "not_an_object"),
    (json.dumps({"product_id": "p1", "text": "no id"}).encode(), "missing_review_id"),
    (json.dumps({"review_id": "b6", "text": "no product"}).encode(), "missing_product_id"),
    (json.dumps({"review_id": "b7", "product_id": "p1"}).encode(), "missing_text"),
    (json.dumps({"review_id": "b8", "product_id": "p1", "text": "   "}).encode(), "empty_text"),
    (json.dumps({"review_id": 9, "product_id": "p1", "text": "x"}).encode(), "wrong_type"),
    (json.dumps({"review_id": "b10", "product_id": "p1", "text": "x" * 40_000}).encode(), "text_too_long"),
    (json.dumps({"schema_version": 7, "review_id": "b11", "product_id": "p1", "text": "x"}).encode(),
     "unknown_schema_version"),
]


@pytest.mark.smoke
def test_every_review_enriched_once_and_bad_ones_dead_lettered(
    kafka_settings: KafkaSettings, redis_url: str, demo_model_dir: Path
) -> None:
    pipe = Pipeline(kafka_settings, redis_url, demo_model_dir)
    reviews = make_reviews(400)
    values: list[tuple[bytes, bytes | None]] = list(keyed(reviews))
    # Bad messages spread through the stream; then an exact re-send, an edit (a later event time) and a delete.
    for i, (raw, _) in enumerate(BAD_INPUTS):
        values.insert(30 * i + 7, (b"p1", raw))
    later = (reviews[5].timestamp or 0) + 60
    edit = reviews[5].model_copy(update={"text": "Changed my mind: it broke.", "timestamp": later})
    delete = Retraction(review_id=reviews[7].review_id, product_id=reviews[7].product_id)
    for record in (reviews[3], edit, delete):
        values.append((record.product_id.encode(), record.to_bytes()))
    pipe.produce(values)
    pipe.start_worker()
    try:
        pipe.wait_until(lambda: pipe.store.totals().get("messages", 0) >= len(values), 240, "every message")
        # Committed output lags Redis by at most one transaction.
        pipe.wait_until(lambda: len(pipe.enriched_records()) >= 402 and len(pipe.dead_letters()) >= len(BAD_INPUTS),
                        60, "committed output")
    finally:
        codes = pipe.stop_all()
    assert codes == [0], pipe.tail_logs()  # SIGTERM drains and exits 0

    records = pipe.enriched_records()
    ids = Counter(r["review_id"] for r in records if r.get("op") != "delete")
    assert len(records) == 402 and set(ids) == {r.review_id for r in reviews}
    assert ids[reviews[5].review_id] == 2 and max(ids.values()) == 2 and sum(ids.values()) == 401
    assert [r["review_id"] for r in records if r.get("op") == "delete"] == [reviews[7].review_id]
    totals = pipe.store.totals()
    assert (totals["resends"], totals["edits"], totals["deletes"], totals["reviews"]) == (1, 1, 1, 399)
    first = records[0]
    assert {"sentiment", "rating", "aspects", "aspects_detected", "model_name", "model_version", "source"} <= set(first)
    assert 1.0 <= first["rating"] <= 5.0 and first["sentiment"]["label"] in ("negative", "neutral", "positive")

    dead = pipe.dead_letters()
    reasons = Counter(d.reason for d in dead)
    assert reasons == Counter(r for _, r in BAD_INPUTS)
    bad_by_reason = {reason: raw for raw, reason in BAD_INPUTS}
    for d in dead:
        if d.reason in bad_by_reason:
            assert (d.raw or b"") == (bad_by_reason[d.reason] or b""), d.reason  # original bytes, untouched
        assert d.source.topic == pipe.input
    assert_aggregates_match_recount(pipe.store, records)
    assert all(w >= 0 for w in pipe.store.watermarks().values())


def test_two_replicas_one_killed_mid_run_still_exact(
    kafka_settings: KafkaSettings, redis_url: str, demo_model_dir: Path
) -> None:
    n = 3000
    pipe = Pipeline(kafka_settings, redis_url, demo_model_dir, partitions=6)
    reviews = make_reviews(n, products=40)
    pipe.produce(keyed(reviews))
    pipe.start_worker("--batch-max-records", "64")
    victim = pipe.start_worker("--batch-max-records", "64")
    try:
        pipe.wait_until(lambda: pipe.committed_reviews() >= n // 4, 300, "a quarter of the stream")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        time.sleep(1.0)
        pipe.start_worker("--batch-max-records", "64")  # the restart
        pipe.wait_until(lambda: pipe.committed_reviews() >= n, 400, "the whole stream")
        pipe.wait_until(lambda: len(pipe.enriched_records()) >= n, 90, "committed output")
    finally:
        pipe.stop_all()
    records = pipe.enriched_records()
    ids = Counter(r["review_id"] for r in records)
    assert len(ids) == n and max(ids.values()) == 1, f"{len(records)} records, {len(ids)} unique"
    assert_aggregates_match_recount(pipe.store, records)
    assert pipe.dead_letters() == []
