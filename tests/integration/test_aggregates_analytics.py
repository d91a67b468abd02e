"""Per-day trends, half-life scores, alerts, live model quality and the last reviews, as the script keeps them in a
real Redis (through the worker's own BatchProcessor)."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
import redis

from consumer.processing import BatchProcessor, InMessage
from reviews_mtl.aggregates.store import AggregateStore
from reviews_mtl.contracts import ASPECT_NAMES, Prediction, SentimentLabel, SentimentResult
from reviews_mtl.settings import AnalyticsSettings
from tests.integration.consumer_harness import current_reviews

pytestmark = pytest.mark.integration

DAY = 86_400
NOW = float(int(time.time()))  # one "now" for the whole module: buckets expire by Redis's own clock


class KeywordPredictor:
    """negative when the text says "bad", neutral for "meh", else positive; rating 1.5 / 3 / 4.5 (or the number in
    the text after "r="); aspects named in the text."""

    model_name = "keywords"
    model_version = "kw-1"
    runtime = "python"

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        out = []
        for t in texts:
            label: SentimentLabel = "negative" if "bad" in t else "neutral" if "meh" in t else "positive"
            rating = {"negative": 1.5, "neutral": 3.0, "positive": 4.5}[label]
            if "r=" in t:
                rating = float(t.split("r=")[1].split()[0])
            probs = {k: (0.9 if k == label else 0.05) for k in ("negative", "neutral", "positive")}
            aspects = {a: (0.9 if a in t else 0.1) for a in ASPECT_NAMES}
            out.append(Prediction(sentiment=SentimentResult(label=label, confidence=0.9, probabilities=probs),
                                  rating=rating, aspects=aspects, aspects_detected=[a for a in ASPECT_NAMES if a in t]))
        return out


@pytest.fixture
def store(redis_url: str) -> AggregateStore:
    return AggregateStore(redis.Redis.from_url(redis_url), prefix=f"t-{uuid.uuid4().hex[:8]}",
                          analytics=AnalyticsSettings(), clock=lambda: NOW)


def _msg(offset: int, obj: dict[str, Any], partition: int = 0) -> InMessage:
    return InMessage("in", partition, offset, str(obj["product_id"]).encode(), json.dumps(obj).encode())


def _processor(store: AggregateStore) -> BatchProcessor:
    return BatchProcessor(KeywordPredictor(), store, clock=lambda: NOW)


def test_day_buckets_equal_a_recount_of_what_was_published_grouped_by_day(store: AggregateStore) -> None:
    rnd = random.Random(5)
    proc = _processor(store)
    published: list[dict[str, Any]] = []
    offset = 0
    for _ in range(8):
        batch = []
        for _ in range(40):
            rid = f"r{rnd.randrange(120)}"
            obj: dict[str, Any] = {"review_id": rid, "product_id": "P", "version": rnd.randrange(4),
                                   "text": rnd.choice(["bad price", "meh shipping", "great quality", "bad quality"]),
                                   "timestamp": NOW - rnd.uniform(0, 60) * DAY}
            if rnd.random() < 0.1:
                obj = {"op": "delete", "review_id": rid, "product_id": "P"}
            batch.append(_msg(offset, obj))
            offset += 1
        out = proc.process(batch)
        published += [json.loads(r.value or b"") for r in out.enriched]
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for r in current_reviews(published).values():
        day = time.strftime("%Y-%m-%d", time.gmtime(r["timestamp"]))
        expected[day]["review_count"] += 1
        expected[day][r["sentiment"]["label"]] += 1
        for a in r["aspects_detected"]:
            expected[day][f"aspect:{a}"] += 1
    trend = store.trend("P", days=61)
    assert len(trend.days) == 61 and trend.days[-1].day == time.strftime("%Y-%m-%d", time.gmtime(NOW))
    got = {d.day: Counter({"review_count": d.review_count, **d.sentiment,
                           **{f"aspect:{a}": c for a, c in d.aspects.items()}}) for d in trend.days}
    assert {day: +c for day, c in got.items() if +c} == {day: +c for day, c in expected.items()}
    assert sum(d.review_count for d in trend.days) == store.product("P").review_count  # type: ignore[union-attr]


def test_half_life_shares_match_the_closed_form(store: AggregateStore) -> None:
    """One negative review at t, one positive a half-life later, one positive two half-lives later: weights
    1, 2, 4, so the recent negative share is 1/7 (and the lifetime share 1/3); an edit of the first to positive
    takes its weight back exactly."""
    h = AnalyticsSettings().half_life_s
    t = NOW - 20 * DAY
    proc = _processor(store)
    proc.process([_msg(0, {"review_id": "a", "product_id": "P", "text": "bad price", "timestamp": t}),
                  _msg(1, {"review_id": "b", "product_id": "P", "text": "great", "timestamp": t + h}),
                  _msg(2, {"review_id": "c", "product_id": "P", "text": "great", "timestamp": t + 2 * h})])
    ranked = store.top("recent_negative_share", n=1, min_reviews=1)
    assert ranked[0].product_id == "P" and ranked[0].value == pytest.approx(1 / 7, rel=1e-9)
    assert store.top("recent_complaints:price", n=1, min_reviews=1)[0].value == pytest.approx(1 / 7, rel=1e-9)
    assert store.top("negative_share", n=1, min_reviews=1)[0].value == pytest.approx(1 / 3)
    proc.process([_msg(3, {"review_id": "a", "product_id": "P", "text": "great", "timestamp": t + 60})])
    assert store.top("recent_negative_share", n=1, min_reviews=1)[0].value == pytest.approx(0.0, abs=1e-12)
    assert store.top("recent_complaints:price", n=1, min_reviews=1) == []


def test_a_jump_in_negative_share_raises_one_alert_and_a_steady_product_none(store: AggregateStore) -> None:
    proc = _processor(store)
    offset = 0

    def send(objs: list[dict[str, Any]]) -> Any:
        nonlocal offset
        batch = []
        for obj in objs:
            batch.append(_msg(offset, obj))
            offset += 1
        return proc.process(batch)

    old = NOW - 40 * DAY
    history = [{"review_id": f"s{i}", "product_id": p, "text": "great" if i % 5 else "bad price",
                "timestamp": old + i * 3600} for p in ("SPIKE", "STEADY") for i in range(60)]
    assert send(history).alerts == []
    steady = [{"review_id": f"n{i}", "product_id": "STEADY", "text": "great" if i % 5 else "bad price",
               "timestamp": NOW - i * 600} for i in range(20)]
    spike = [{"review_id": f"x{i}", "product_id": "SPIKE", "text": "bad shipping", "timestamp": NOW - i * 600}
             for i in range(12)]
    first = send(steady + spike[:6])
    again = send(spike[6:])
    alerts = [json.loads(a.value or b"") for a in [*first.alerts, *again.alerts]]
    kinds = sorted((a["product_id"], a["kind"]) for a in alerts)
    assert kinds == [("SPIKE", "complaints:shipping"), ("SPIKE", "negative_share")]
    negative = next(a for a in alerts if a["kind"] == "negative_share")
    assert negative["from"] < 0.35 < 0.8 < negative["to"] and negative["recent_reviews"] >= 5
    assert set(negative["review_ids"]) <= {s["review_id"] for s in spike}
    assert [a["kind"] for a in store.alerts("SPIKE")] == [a["kind"] for a in reversed(alerts)]

    # The transaction of the batch that raised them aborted: its replay publishes the same alerts, decides none.
    replayed = proc.process([InMessage("in", 0, o, b"SPIKE", m.value) for o, m in
                             zip(range(offset - 6, offset), [_msg(0, s) for s in spike[6:]], strict=True)])
    assert [a.value for a in replayed.alerts] == [a.value for a in again.alerts]
    assert len(store.alerts()) == 2


def test_live_quality_equals_a_recount_of_the_stars(store: AggregateStore) -> None:
    rnd = random.Random(9)
    proc = _processor(store)
    objs = []
    for i in range(300):
        stars = rnd.randint(1, 5)
        predicted = round(rnd.uniform(1, 5), 2)
        text = ("bad" if predicted < 2.5 else "meh" if predicted < 3.5 else "fine") + f" r={predicted}"
        objs.append({"review_id": f"q{i}", "product_id": f"P{i % 7}", "text": text, "rating": stars,
                     "timestamp": NOW - 3600})
    objs += [{"review_id": "nostars", "product_id": "P0", "text": "fine r=4.0"}]
    out = proc.process([_msg(i, o) for i, o in enumerate(objs)])
    records = [json.loads(r.value or b"") for r in out.enriched]
    rated = [r for r in records if r.get("true_rating") is not None]

    def truth(stars: int) -> str:
        return "negative" if stars <= 2 else "neutral" if stars == 3 else "positive"

    [day] = store.quality(days=1)
    assert (day.model_version, day.predictions, day.n) == ("kw-1", 301, 300)
    assert day.rating_mae == pytest.approx(sum(abs(r["rating"] - r["true_rating"]) for r in rated) / 300, abs=1e-4)
    hits = sum(max(1, min(5, int(r["rating"] + 0.5))) == r["true_rating"] for r in rated)
    assert day.star5_accuracy == pytest.approx(hits / 300, abs=1e-4)
    agree = sum(truth(r["true_rating"]) == r["sentiment"]["label"] for r in rated)
    assert day.sentiment_agreement == pytest.approx(agree / 300, abs=1e-4)
    assert sum(sum(row.values()) for row in day.confusion.values()) == 300


def test_the_last_reviews_are_kept_bounded_and_leave_with_a_delete(store: AggregateStore) -> None:
    proc = _processor(store)
    proc.process([_msg(i, {"review_id": f"r{i}", "product_id": "P", "text": f"great number {i}",
                           "timestamp": NOW - 100 + i}) for i in range(15)])
    recent = store.recent_reviews("P")
    assert [r["review_id"] for r in recent] == [f"r{i}" for i in range(14, 4, -1)]
    assert recent[0]["text"] == "great number 14" and recent[0]["sentiment"] == "positive"
    proc.process([_msg(15, {"op": "delete", "review_id": "r14", "product_id": "P"})])
    assert [r["review_id"] for r in store.recent_reviews("P")][:2] == ["r13", "r12"]


def test_products_are_found_by_id_prefix(store: AggregateStore) -> None:
    proc = _processor(store)
    ids = ["B00A1", "B00A2", "B01X", "C77", "B00A3"]
    proc.process([_msg(i, {"review_id": "r", "product_id": pid, "text": "great"}) for i, pid in enumerate(ids)])
    assert store.search("B00A") == ["B00A1", "B00A2", "B00A3"]
    assert store.search("B00A", offset=1, limit=1) == ["B00A2"]
    assert store.search("") == sorted(ids)
    assert store.search("Z") == []
