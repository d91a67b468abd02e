"""BatchProcessor with an in-memory aggregate store and a fake predictor: one batch in, what goes out, replays,
edits, deletes and re-sends, and the integrity checks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from consumer.processing import BatchProcessor, InMessage
from reviews_mtl.aggregates.store import LastAppliedBatch
from reviews_mtl.contracts import DLQ_HEADER_REASON, DecodeReason, Prediction, SentimentResult
from tests.fixtures.memory_store import MemoryStore

TOPIC = "reviews"


class FakePredictor:
    """Every text is positive, 4.5 stars, about quality; counts the texts it was asked about."""

    model_name = "fake"
    model_version = "fake-1"
    runtime = "fake-runtime"

    def __init__(self) -> None:
        self.texts: list[str] = []

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.texts.extend(texts)
        sentiment = SentimentResult(
            label="positive", confidence=0.9, probabilities={"negative": 0.05, "neutral": 0.05, "positive": 0.9}
        )
        return [
            Prediction(sentiment=sentiment, rating=4.5, aspects={"quality": 0.8}, aspects_detected=["quality"])
            for _ in texts
        ]


def _review(review_id: str, product_id: str = "p1", title: str | None = None, **extra: Any) -> bytes:
    obj: dict[str, Any] = {"review_id": review_id, "product_id": product_id, "text": "works fine"}
    obj["timestamp"] = 1_700_000_000.0
    if title is not None:
        obj["title"] = title
    return json.dumps({**obj, **extra}).encode()


def _ids(out: Any) -> list[str]:
    return [json.loads(r.value or b"")["review_id"] for r in out.enriched]


def _messages(values: Sequence[bytes | None], partition: int = 0, start: int = 0) -> list[InMessage]:
    return [InMessage(TOPIC, partition, start + i, b"k", v) for i, v in enumerate(values)]


def _reason(record: Any) -> str:
    value = dict(record.headers)[DLQ_HEADER_REASON]
    return value.decode() if isinstance(value, bytes) else str(value)


def test_a_batch_is_predicted_applied_and_published_with_its_dead_letters() -> None:
    predictor, store = FakePredictor(), MemoryStore()
    processor = BatchProcessor(predictor, store, clock=lambda: 1000.0)
    out = processor.process(_messages([_review("r1", title="Nice"), b"{not json", _review("r2", "p2")]))

    assert predictor.texts == ["Nice. works fine", "works fine"]  # the model-input rule, title first
    assert [r.key for r in out.enriched] == [b"p1", b"p2"]
    enriched = [json.loads(r.value or b"") for r in out.enriched]
    assert [e["review_id"] for e in enriched] == ["r1", "r2"]
    assert {e["sentiment"]["label"] for e in enriched} == {"positive"}
    assert enriched[0]["processed_at"] == 1000.0
    assert enriched[0]["source"] == {"topic": TOPIC, "partition": 0, "offset": 0}
    assert [_reason(r) for r in out.dead_letters] == [DecodeReason.INVALID_JSON.value]
    assert out.dead_letter_reasons == [DecodeReason.INVALID_JSON.value]
    assert out.next_offsets == {(TOPIC, 0): 3}
    assert out.event_times == [1_700_000_000.0, 1_700_000_000.0]
    assert [a["review_id"] for a in store.applied] == ["r1", "r2"]
    assert store.watermarks == {(TOPIC, 0): 2}


def test_a_replayed_batch_is_republished_from_the_store_not_predicted_again() -> None:
    predictor, store = FakePredictor(), MemoryStore()
    processor = BatchProcessor(predictor, store)
    batch = _messages([_review("r1"), _review("r2")])
    first = processor.process(batch)
    predicted = len(predictor.texts)

    again = processor.process(batch)  # e.g. the Kafka commit failed after Redis applied the batch

    assert len(predictor.texts) == predicted
    assert again.replayed == 2
    assert [json.loads(r.value or b"") for r in again.enriched] == [json.loads(r.value or b"") for r in first.enriched]
    assert len(store.applied) == 2  # counted once
    assert again.dead_letters == []


def test_a_resent_review_is_counted_in_a_metric_not_dead_lettered_nor_published() -> None:
    store = MemoryStore()
    processor = BatchProcessor(FakePredictor(), store)
    processor.process(_messages([_review("r1")]))
    out = processor.process(_messages([_review("r1"), _review("r3")], start=1))

    assert _ids(out) == ["r3"]
    assert out.dead_letters == [] and out.resends == 1
    assert out.next_offsets == {(TOPIC, 0): 3}
    assert len(store.counted) == 2


def test_an_edit_with_a_higher_version_replaces_the_review_and_an_older_one_is_a_resend() -> None:
    store = MemoryStore()
    processor = BatchProcessor(FakePredictor(), store)
    processor.process(_messages([_review("r1", version=1)]))
    out = processor.process(_messages([_review("r1", version=2), _review("r1", version=1)], start=1))

    assert _ids(out) == ["r1"] and out.edits == 1 and out.resends == 1
    assert json.loads(out.enriched[0].value or b"")["version"] == 2
    assert store.counted[("p1", "r1")]["version"] == 2


def test_a_delete_retracts_the_review_and_is_published_as_a_retraction() -> None:
    store = MemoryStore()
    processor = BatchProcessor(FakePredictor(), store)
    processor.process(_messages([_review("r1"), _review("r2")]))
    delete = json.dumps({"op": "delete", "review_id": "r1", "product_id": "p1"}).encode()
    out = processor.process(_messages([delete, delete], start=2))

    assert out.deletes == 1 and out.resends == 1 and out.dead_letters == []
    record = json.loads(out.enriched[0].value or b"")
    assert record["op"] == "delete" and record["review_id"] == "r1" and record["source"]["offset"] == 2
    assert set(store.counted) == {("p1", "r2")}


def test_partitions_are_kept_apart() -> None:
    store = MemoryStore()
    processor = BatchProcessor(FakePredictor(), store)
    out = processor.process([*_messages([_review("a")], partition=0), *_messages([_review("b", "p2")], partition=3)])
    assert out.next_offsets == {(TOPIC, 0): 1, (TOPIC, 3): 1}
    assert store.watermarks == {(TOPIC, 0): 0, (TOPIC, 3): 0}


def test_a_replay_whose_copy_is_of_another_review_is_an_identity_violation() -> None:
    store = MemoryStore()
    processor = BatchProcessor(FakePredictor(), store)
    processor.process(_messages([_review("r1"), _review("r2")]))
    # The same offsets now hold other reviews (a recreated topic without ids, another cluster).
    out = processor.process(_messages([_review("x1"), _review("x2")]))

    assert [(v.partition, v.reason) for v in out.violations] == [(0, "identity")]
    assert out.enriched == [] and out.dead_letters == []
    assert len(store.counted) == 2


def test_messages_older_than_the_last_applied_batch_are_skipped_and_reported() -> None:
    store = MemoryStore()
    processor = BatchProcessor(FakePredictor(), store)
    processor.process(_messages([_review("r1"), _review("r2")]))
    processor.process(_messages([_review("r3")], start=2))
    predicted = len(processor.predictor.texts)  # type: ignore[attr-defined]
    out = processor.process(_messages([_review("r1"), _review("r2"), _review("r3"), _review("r4")]))  # a reset

    assert out.below_watermark == {(TOPIC, 0): 2}
    assert _ids(out) == ["r3", "r4"] and out.replayed == 1
    assert len(processor.predictor.texts) == predicted + 1  # type: ignore[attr-defined]


def test_a_store_that_refuses_the_batch_gets_nothing_published() -> None:
    store = MemoryStore()
    processor = BatchProcessor(FakePredictor(), store)
    processor.process(_messages([_review("r1")]))
    # Kafka committed up to offset 5, Redis holds up to 0: a snapshot restored, say.
    out = processor.process(_messages([_review("r5")], start=5), starts={(TOPIC, 0): 5})

    assert [(v.partition, v.reason) for v in out.violations] == [(0, "redis_behind")]
    assert out.enriched == [] and ("p1", "r5") not in store.counted


def test_a_review_the_worker_failed_on_is_dead_lettered_again_on_replay_not_predicted() -> None:
    class Breaks(FakePredictor):
        def predict(self, texts: Sequence[str]) -> list[Prediction]:
            if any("poison" in t for t in texts):
                raise RuntimeError("tokenizer failed")
            return super().predict(texts)

    store = MemoryStore()
    processor = BatchProcessor(Breaks(), store)
    poison = json.dumps({"review_id": "bad", "product_id": "p1", "text": "poison"}).encode()
    first = processor.process(_messages([_review("r1"), poison]))
    processor.predictor = FakePredictor()  # fixed meanwhile: still, what was counted stays what is published
    again = processor.process(_messages([_review("r1"), poison]))

    assert [_reason(r) for r in first.dead_letters] == [_reason(r) for r in again.dead_letters] == ["internal_error"]
    assert _ids(again) == ["r1"] and again.replayed == 1
    assert store.last_applied[(TOPIC, 0)] != LastAppliedBatch.empty()
