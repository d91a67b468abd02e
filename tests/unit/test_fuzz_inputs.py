"""Whatever bytes arrive, decoding gives a value or a DecodeFailure and a batch gives records or dead letters.

Property-based (Hypothesis): arbitrary bytes, arbitrary JSON values, reviews with hostile field values
(lone surrogates, control characters, huge and non-finite numbers, extreme sizes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consumer.processing import BatchProcessor, InMessage
from reviews_mtl.aggregates.store import ApplyResult, PartitionBatch
from reviews_mtl.contracts import (
    ASPECT_NAMES,
    DecodeFailure,
    DecodeReason,
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


# The decoder's fast paths (orjson, and building plainly valid reviews without validating twice) must decode every
# message exactly as the reference path does: the standard library's JSON and pydantic's validation.

def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (1 == 1.0 == True in Python, not here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:
        return bool(b != b)
    return bool(a == b)


NUMBERS = st.integers() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() \
    | st.floats(min_value=-1e-300, max_value=1e-300)
ANY_JSON = st.recursive(st.none() | st.booleans() | NUMBERS | st.text(alphabet=st.characters(codec=None)),
                        lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=16)


def _encodings(value: Any) -> list[bytes]:
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    return [json.dumps(value).encode("ascii"), compact, b" \n" + json.dumps(value, indent=1).encode("ascii") + b"\t"]


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(ANY_JSON | REVIEWISH)
@example({"version": 2**64, "rating": -(2**63) - 1, "big": 10**30, "review_id": "r", "product_id": "p", "text": "t"})
@example({"review_id": "r", "product_id": "p", "text": "t", "version": 2**63 - 1, "timestamp": 2**64})
@example({"review_id": "r", "product_id": "p", "text": "t", "extra": [2**70, {"deep": 10**40}]})
@example([[[[[[[[[[1]]]]]]]]]] * 10)
@example({"text": "\ud800", "x": float("nan"), "y": 1e-320})
def test_fast_json_reads_what_the_standard_library_reads(value: Any) -> None:
    for raw in _encodings(value):
        _assert_fast_agrees(raw)


def _assert_fast_agrees(raw: bytes) -> None:
    """Where the fast reader answers, the contract sees what the standard library gives: the same top-level
    scalars (nested values are never read) and the same decoded review or failure."""
    from reviews_mtl.contracts import _SLOW, _parse_fast, _parse_slow, validate_message_object

    fast = _parse_fast(raw)
    if fast is _SLOW:
        return
    slow = _parse_slow(raw)
    assert isinstance(fast, dict) and isinstance(slow, dict) and list(fast) == list(slow), raw[:200]
    for key, value in fast.items():
        if not isinstance(value, (dict, list)):
            assert _same(value, slow[key]), (key, raw[:200])
    a, b = validate_message_object(fast), validate_message_object(slow)
    assert type(a) is type(b)
    assert _same(a.__dict__, b.__dict__) if not isinstance(a, DecodeFailure) else a == b


@given(st.binary(max_size=300))
@example(b"\xef\xbb\xbf{}")
@example(b"[1,]")
@example(b"01")
@example(b"1e400")
@example(b"-0")
@example(b'"\\ud800"')
@example(b"\xed\xa0\x80")
@example(b'{"a":1,"a":2}')
@example(b"[" * 2000 + b"]" * 2000)
@example(b"123456789012345678901")
@example(b"NaN")
@example(b'"\x01"')
@example(b'{"a":' * 70 + b"1" + b"}" * 70)
@example(b'{"review_id":"r","product_id":"p","text":"t","version":' + b"9" * 25 + b"}")
def test_fast_json_refuses_or_agrees_on_any_bytes(raw: bytes) -> None:
    _assert_fast_agrees(raw)
    assert _same(decode_review(raw), decode_review(raw))  # a value, never an exception


def test_deep_nesting_reads_as_the_standard_library_reads() -> None:
    # Outside Hypothesis, which raises the recursion limit: here the standard library refuses depth 1000 and orjson
    # (limit 1024) would not, so the fast reader must leave such a message to the standard library.
    raw = b'{"a":' * 1000 + b"1" + b"}" * 1000
    _assert_fast_agrees(raw)
    result = decode_review(raw)
    assert isinstance(result, DecodeFailure) and result.reason is DecodeReason.INVALID_JSON


PLAIN_TEXT = st.text(min_size=1, max_size=30) | st.text(alphabet=st.characters(codec=None), min_size=1, max_size=30)
VALIDISH = st.fixed_dictionaries(
    {"review_id": PLAIN_TEXT | st.just("r" * 257), "product_id": PLAIN_TEXT,
     "text": PLAIN_TEXT | st.just("é" * 16_001)},
    optional={"title": st.none() | PLAIN_TEXT | st.just("t" * 1001) | st.integers(),
              "rating": st.none() | st.integers(-1, 7) | st.sampled_from([5.0, 4.5, True, "5"]),
              "timestamp": st.none() | st.integers(1_600_000_000, 1_700_000_000) | st.floats(1.6e9, 1.7e9)
              | st.sampled_from(["2026-01-01T00:00:00Z", True, "x"]),
              "verified": st.none() | st.booleans() | st.sampled_from([1, "yes"]),
              "category": st.none() | PLAIN_TEXT | st.just(3), "user_id": st.none() | PLAIN_TEXT,
              "version": st.none() | st.integers(-2, 5) | st.sampled_from([1.0, False]),
              "schema_version": st.sampled_from([1, True]), "op": st.sampled_from(["upsert", "delete"]),
              "extra": JSON_SCALARS},
)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(VALIDISH | REVIEWISH)
@example({"review_id": "r\ud800", "product_id": "p", "text": "t"})
@example({"review_id": "r", "product_id": "p", "text": "a\ud800"})
@example({"review_id": "r", "product_id": "p", "text": "t", "title": "\udfff", "user_id": "\ud800"})
@example({"review_id": "r", "product_id": "p", "text": "t", "title": "é" * 501})
@example({"review_id": "r" * 257, "product_id": "p", "text": "t"})
@example({"review_id": "r", "product_id": "p", "op": "delete", "version": -1})
@example({"review_id": "r", "product_id": "p", "text": "t", "version": -1})
@example({"review_id": "r", "product_id": "p", "text": "t", "rating": 6, "version": True, "verified": 1})
def test_fast_validation_builds_what_pydantic_builds(obj: dict[str, Any]) -> None:
    from reviews_mtl.contracts import _checked_retraction, _checked_review, _precheck, _validate_fields

    checked = _precheck(obj)
    if isinstance(checked, DecodeFailure):
        return
    op, fields = checked
    built = _checked_retraction(dict(fields)) if op == "delete" else _checked_review(dict(fields))
    reference = _validate_fields(op, dict(fields))
    if built is None:
        return
    assert type(built) is type(reference)
    assert isinstance(built, (Review, Retraction)) and isinstance(reference, (Review, Retraction))
    assert _same(built.__dict__, reference.__dict__)
    assert built.model_fields_set == reference.model_fields_set
    assert built.to_bytes() == reference.to_bytes() and built == reference


def test_an_ordinary_review_takes_the_fast_path() -> None:
    from reviews_mtl.contracts import _checked_review, _precheck

    raw = {"review_id": "r1", "product_id": "p1", "text": "Crème brûlée torch, works great", "title": "Nice",
           "rating": 5.0, "timestamp": "2026-01-01T00:00:00Z", "verified": True, "version": 2, "extra": [1]}
    checked = _precheck(raw)
    assert not isinstance(checked, DecodeFailure)
    built = _checked_review(checked[1])
    assert isinstance(built, Review) and built.rating == 5 and built.timestamp == 1767225600.0
    assert decode_review(json.dumps(raw).encode()) == built


def test_stripping_control_characters_removes_exactly_the_listed_ones() -> None:
    from reviews_mtl.contracts import _CONTROL_CHARS, strip_control_characters

    for code in [*range(0x250), 0x2028, 0x202E, 0xFEFF, 0xD800, 0x1F600]:
        text = f"a{chr(code)}b"
        assert strip_control_characters(text) == text.translate(_CONTROL_CHARS)
        assert (strip_control_characters(text) == "ab") == (code in _CONTROL_CHARS)


def test_the_fast_path_knows_every_field_of_the_contract() -> None:
    # A field added to Review or Retraction must be checked by the fast path too, or it would skip validation.
    from reviews_mtl.contracts import _OPTIONAL_TYPES

    assert set(Review.model_fields) == {"schema_version", "review_id", "product_id", "text", *_OPTIONAL_TYPES}
    assert set(Retraction.model_fields) == {"schema_version", "op", "review_id", "product_id", "version", "timestamp"}
