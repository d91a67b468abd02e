"""One batch in, what goes out: against a real Redis, with a fake predictor (no model needed).

The key property: a replayed batch counts nothing twice and re-publishes exactly what Redis counted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import pytest
import redis

from consumer.processing import BatchProcessor, InMessage
from reviews_mtl.aggregates.store import AggregateStore
from reviews_mtl.contracts import ASPECT_NAMES, DeadLetter, Prediction, SentimentLabel, SentimentResult

pytestmark = pytest.mark.integration


class FakePredictor:
    """Deterministic per call *count*: a replay that re-predicted would publish different numbers."""

    model_name = "fake"
    model_version = "0"
    runtime = "fake-runtime"

    def __init__(self) -> None:
        self.calls = 0
        self.seen: list[str] = []

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.calls += 1
        self.seen.extend(texts)
        out = []
        for t in texts:
            label: SentimentLabel = "negative" if "bad" in t else "positive"
            probs = {"negative": 0.9, "neutral": 0.05, "positive": 0.05} if label == "negative" else \
                {"negative": 0.05, "neutral": 0.05, "positive": 0.9}
            aspects = {a: (0.9 if a in t else 0.1) for a in ASPECT_NAMES}
            out.append(Prediction(
                sentiment=SentimentResult(label=label, confidence=0.9, probabilities=probs),
                rating=1.0 + self.calls / 10 if label == "negative" else 5.0 - self.calls / 10,
                aspects=aspects, aspects_detected=[a for a, p in aspects.items() if p > 0.5],
            ))
        return out


def msg(offset: int, value: bytes | None, partition: int = 0, topic: str = "reviews") -> InMessage:
    return InMessage(topic, partition, offset, b"k", value)


def review(rid: str, pid: str, text: str) -> bytes:
    return json.dumps({"review_id": rid, "product_id": pid, "text": text, "timestamp": 1_700_000_000.0}).encode()


@pytest.fixture
def store(redis_url: str) -> AggregateStore:
    return AggregateStore(redis.Redis.from_url(redis_url), prefix=f"t-{uuid.uuid4().hex[:8]}")


def test_batch_routes_valid_and_bad_and_counts_once(store: AggregateStore) -> None:
    predictor = FakePredictor()
    proc = BatchProcessor(predictor, store)
    batch = [
        msg(0, review("r1", "A", "bad price")),
        msg(1, b"{not json"),
        msg(2, review("r2", "A", "great quality")),
        msg(0, review("r3", "B", "bad shipping"), partition=1),
        msg(3, json.dumps({"review_id": "r4", "product_id": "A"}).encode()),
    ]
    out = proc.process(batch)
    assert len(out.enriched) == 3
    assert sorted(out.dead_letter_reasons) == ["invalid_json", "missing_text"]
    dl = DeadLetter.from_headers(out.dead_letters[0].headers, out.dead_letters[0].value)  # type: ignore[arg-type]
    assert dl.source.offset in (1, 3) and out.dead_letters[0].value in (b"{not json", batch[4].value)
    assert out.next_offsets == {("reviews", 0): 4, ("reviews", 1): 1}
    a = store.product("A")
    assert a is not None and a.review_count == 2
    assert a.sentiment == {"negative": 1, "neutral": 0, "positive": 1}
    assert a.aspects["price"] == 1 and a.aspects["quality"] == 1
    assert a.aspect_sentiment["price"]["negative"] == 1
    assert store.watermarks() == {("reviews", 0): 3, ("reviews", 1): 0}
    assert store.totals()["dead_letters"] == 2


def test_replayed_batch_is_a_no_op_and_republishes_what_was_counted(store: AggregateStore) -> None:
    predictor = FakePredictor()
    proc = BatchProcessor(predictor, store)
    batch = [msg(i, review(f"r{i}", "P", "bad" if i % 2 else "fine")) for i in range(6)]
    first = proc.process(batch)
    before = store.product("P")
    # The transaction of the first attempt "aborted": the same messages come again, plus new ones.
    second = proc.process([*batch, msg(6, review("r6", "P", "bad again"))])
    after = store.product("P")
    assert before is not None and after is not None
    assert after.review_count == before.review_count + 1
    republished = [json.loads(r.value or b"") for r in second.enriched[:6]]
    assert republished == [json.loads(r.value or b"") for r in first.enriched]
    assert second.replayed == 6
    assert predictor.seen.count("bad again") == 1 and len(predictor.seen) == 7
    third = proc.process([*batch, msg(6, review("r6", "P", "bad again"))])
    assert store.product("P") == after
    assert len(third.enriched) == 7 and third.replayed == 7


def test_a_resent_review_is_neither_counted_nor_dead_lettered_even_on_replay(store: AggregateStore) -> None:
    proc = BatchProcessor(FakePredictor(), store)
    out1 = proc.process([msg(0, review("same", "P", "fine")), msg(1, review("same", "P", "fine"))])
    out2 = proc.process([msg(2, review("same", "P", "fine"))])
    assert len(out1.enriched) == 1 and out1.resends == 1 and out1.dead_letters == []
    assert out2.enriched == [] and out2.resends == 1
    p = store.product("P")
    assert p is not None and p.review_count == 1
    # A replay of the batch holding the re-send publishes nothing for it again, and counts nothing.
    replay = proc.process([msg(2, review("same", "P", "fine"))])
    assert replay.enriched == [] and replay.dead_letters == [] and replay.replayed == 0
    assert store.product("P") == p
    assert store.totals()["resends"] == 2


def test_rankings_follow_the_counts(store: AggregateStore) -> None:
    proc = BatchProcessor(FakePredictor(), store)
    batch = [msg(i, review(f"x{i}", pid, text)) for i, (pid, text) in enumerate(
        [("A", "bad price"), ("A", "bad price"), ("A", "fine"), ("B", "fine"), ("B", "fine"), ("B", "bad"),
         ("C", "bad")])]
    proc.process(batch)
    assert [r.product_id for r in store.top("negative_share", n=5, min_reviews=2)] == ["A", "B"]
    assert store.top("negative_share", n=5, min_reviews=1)[0].product_id == "C"
    top_price = store.top("complaints:price", n=3, min_reviews=1)
    assert top_price[0].product_id == "A" and top_price[0].value == 2
    with pytest.raises(ValueError, match="unknown ranking"):
        store.top("nonsense")
