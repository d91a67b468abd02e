"""Whatever bytes arrive, decoding gives a value or a DecodeFailure and a batch gives records or dead letters.

Property-based (Hypothesis): arbitrary bytes, arbitrary JSON values, reviews with hostile field values
(lone surrogates, control characters, huge and non-finite numbers, extreme sizes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.processing import BatchProcessor, InMessage
from reviews_mtl.aggregates.store import ApplyResult, PartitionBatch
from reviews_mtl.contracts import (
    ASPECT_NAMES,
    DecodeFailure,
    Prediction,
    Retraction,
    Review,
    SentimentResult,
    decode_review,
)
from tests.fixtures.memory_store import MemoryStore

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
HOSTILE_TEXT = st.text(alphabet=st.characters(codec=None, categories=None), max_size=40) \
    | st.sampled_from(["\ud800", "a\x00b", "\x1b[2J", "\u202e", "x" * 40_000, "", " "])
FIELD_VALUES = HOSTILE_TEXT | JSON_SCALARS | st.sampled_from([float("inf"), float("nan"), 10**400, -1e308, 5.0, 4.5])
REVIEWISH = st.fixed_dictionaries(
    {"review_id": HOSTILE_TEXT, "product_id": HOSTILE_TEXT, "text": HOSTILE_TEXT},
    optional={"title": FIELD_VALUES, "rating": FIELD_VALUES, "timestamp": FIELD_VALUES | st.sampled_from(
        ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+14:00"]),
        "schema_version": FIELD_VALUES, "verified": FIELD_VALUES, "category": FIELD_VALUES,
        "version": FIELD_VALUES | st.integers(0, 3), "op": FIELD_VALUES | st.sampled_from(["upsert", "delete"])},
)


def _dumps(value: Any) -> bytes:
    # ASCII escapes, so a lone surrogate arrives as valid UTF-8 JSON ("\\ud800"), as other clients send it.
    return json.dumps(value).encode("ascii")


def _check_decoded(result: Review | Retraction | DecodeFailure) -> None:
    assert isinstance(result, (Review, Retraction, DecodeFailure))
    if not isinstance(result, DecodeFailure):
        # What the worker does with a valid message must work for it too: keys, Redis strings, JSON out.
        for value in (result.review_id, result.product_id, result.text if isinstance(result, Review) else ""):
            value.encode("utf-8")


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_decode_to_a_review_or_a_failure(raw: bytes) -> None:
    _check_decoded(decode_review(raw))


@given(JSON_VALUES)
def test_arbitrary_json_values_decode_to_a_review_or_a_failure(value: Any) -> None:
    _check_decoded(decode_review(_dumps(value)))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(REVIEWISH)
def test_hostile_reviews_decode_to_a_review_or_a_failure(obj: dict[str, Any]) -> None:
    _check_decoded(decode_review(_dumps(obj)))


class FakePredictor:
    model_name = "fake"
    model_version = "0"
    runtime = "fake-runtime"

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        for text in texts:
            if "\U0001f4a5" in text:  # a text the tokenizer chokes on
                raise RuntimeError("tokenizer failed")
        sentiment = SentimentResult(label="positive", confidence=0.9,
                                    probabilities={"negative": 0.05, "neutral": 0.05, "positive": 0.9})
        return [Prediction(sentiment=sentiment, rating=4.0, aspects={"price": 0.7}, aspects_detected=["price"])
                for _ in texts]


class SerializingStore(MemoryStore):
    """The in-memory store, checking that what the real store would send to Redis serializes."""

    def apply_batch(self, parts: Sequence[PartitionBatch], *, lock: str = "", alerts: bool = True) -> ApplyResult:
        bits = {name: 1 << i for i, name in enumerate(ASPECT_NAMES)}
        for part in parts:
            json.dumps(part.payload(bits))
        return super().apply_batch(parts, lock=lock, alerts=alerts)


VALUES = st.binary(max_size=300) | JSON_VALUES.map(_dumps) | REVIEWISH.map(_dumps) \
    | st.builds(lambda i, t: _dumps({"review_id": f"r{i}", "product_id": "p", "text": t}),
                st.integers(0, 10**6), HOSTILE_TEXT | st.just("boom \U0001f4a5 in text"))


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.none() | VALUES, min_size=1, max_size=12))
def test_any_batch_becomes_records_or_dead_letters_never_an_exception(values: list[bytes | None]) -> None:
    store = SerializingStore()
    messages = [InMessage("in", 0, offset, b"k", value) for offset, value in enumerate(values)]
    out = BatchProcessor(FakePredictor(), store).process(messages)
    # Every message is accounted for exactly once: published (and applied), dead-lettered, or a re-send.
    assert len(out.enriched) + len(out.dead_letters) + out.resends == len(messages)
    assert len(store.applied) == len(out.enriched)
    for rec in out.enriched:
        json.loads(rec.value or b"")
    assert out.next_offsets == {("in", 0): len(messages)}
