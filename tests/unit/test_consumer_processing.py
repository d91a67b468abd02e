"""BatchProcessor with a fake aggregate store and a fake predictor: one batch in, what goes out, and replays."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from consumer.processing import BatchProcessor, InMessage
from reviews_mtl.aggregates.store import ApplyResult, LastAppliedBatch, PartitionBatch
from reviews_mtl.contracts import DLQ_HEADER_REASON, DecodeReason, Prediction, SentimentResult

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


@dataclass
class FakeStore:
    """The AggregateSink protocol in memory, with the Lua script's rules: a record at or below its partition's
    watermark is skipped, a review_id already counted for its product is a duplicate, and the last applied batch
    of each partition is kept for replays."""

    watermarks: dict[tuple[str, int], int] = field(default_factory=dict)
    last_applied: dict[tuple[str, int], LastAppliedBatch] = field(default_factory=dict)
    counted: set[tuple[str, str]] = field(default_factory=set)
    applied: list[dict[str, Any]] = field(default_factory=list)

    def watermarks_for(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {tp: self.watermarks.get(tp, -1) for tp in partitions}

    def last_applied_batch(self, topic: str, partition: int) -> LastAppliedBatch:
        return self.last_applied.get((topic, partition), LastAppliedBatch({}, frozenset()))

    def apply_batch(self, parts: Sequence[PartitionBatch]) -> ApplyResult:
        applied = skipped = dead = 0
        duplicates: dict[tuple[str, int], list[int]] = {}
        for part in parts:
            tp = (part.topic, part.partition)
            mark = self.watermarks.get(tp, -1)
            if any(o <= mark for o in [*(r.offset for r in part.records), *part.dead_offsets]):
                skipped += 1
                continue
            kept = dict(part.replayed)
            for record in part.records:
                kept[record.offset] = record.enriched
                key = (record.product_id, record.review_id)
                if key in self.counted:
                    duplicates.setdefault(tp, []).append(record.offset)
                    continue
                self.counted.add(key)
                self.applied.append(json.loads(record.enriched))
                applied += 1
            dead += len(part.dead_offsets)
            offsets = [*kept, *part.dead_offsets]
            if offsets:
                self.watermarks[tp] = max(offsets)
            dups = frozenset([*duplicates.get(tp, []), *part.replayed_duplicates])
            self.last_applied[tp] = LastAppliedBatch({o: json.loads(b) for o, b in kept.items()}, dups)
        return ApplyResult(applied, skipped, dead, duplicates)


def _review(review_id: str, product_id: str = "p1", title: str | None = None) -> bytes:
    obj: dict[str, Any] = {"review_id": review_id, "product_id": product_id, "text": "works fine"}
    obj["timestamp"] = 1_700_000_000.0
    if title is not None:
        obj["title"] = title
    return json.dumps(obj).encode()


def _messages(values: Sequence[bytes | None], partition: int = 0, start: int = 0) -> list[InMessage]:
    return [InMessage(TOPIC, partition, start + i, b"k", v) for i, v in enumerate(values)]


def _reason(record: Any) -> str:
    value = dict(record.headers)[DLQ_HEADER_REASON]
    return value.decode() if isinstance(value, bytes) else str(value)


def test_a_batch_is_predicted_applied_and_published_with_its_dead_letters() -> None:
    predictor, store = FakePredictor(), FakeStore()
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
    predictor, store = FakePredictor(), FakeStore()
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


def test_a_review_id_counted_before_is_a_dead_letter() -> None:
    store = FakeStore()
    processor = BatchProcessor(FakePredictor(), store)
    processor.process(_messages([_review("r1")]))
    out = processor.process(_messages([_review("r1"), _review("r3")], start=1))

    assert [json.loads(r.value or b"")["review_id"] for r in out.enriched] == ["r3"]
    assert [_reason(r) for r in out.dead_letters] == [DecodeReason.DUPLICATE_REVIEW_ID.value]
    assert out.next_offsets == {(TOPIC, 0): 3}


def test_partitions_are_kept_apart() -> None:
    store = FakeStore()
    processor = BatchProcessor(FakePredictor(), store)
    out = processor.process([*_messages([_review("a")], partition=0), *_messages([_review("b", "p2")], partition=3)])
    assert out.next_offsets == {(TOPIC, 0): 1, (TOPIC, 3): 1}
    assert store.watermarks == {(TOPIC, 0): 0, (TOPIC, 3): 0}
