"""The input contract: every kind of bad bytes becomes a specific reason, never an exception."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reviews_mtl.contracts import (
    MAX_TEXT_BYTES,
    DeadLetter,
    DecodeFailure,
    DecodeReason,
    EnrichedRecord,
    Retraction,
    Review,
    SentimentResult,
    SourceCoordinates,
    decode_review,
    supersedes,
    validate_review_object,
)

GOOD = {"review_id": "r1", "product_id": "p1", "text": "Works fine."}


def j(obj: object) -> bytes:
    return json.dumps(obj).encode()


BAD_CASES: list[tuple[str, bytes | None, DecodeReason]] = [
    ("none", None, DecodeReason.EMPTY_VALUE),
    ("empty bytes", b"", DecodeReason.EMPTY_VALUE),
    ("invalid utf-8", b'{"text": "\xff\xfe"}', DecodeReason.INVALID_UTF8),
    ("truncated json", b'{"review_id": "r1", ', DecodeReason.INVALID_JSON),
    ("not json", b"hello", DecodeReason.INVALID_JSON),
    ("deeply nested json", b"[" * 100_000 + b"]" * 100_000, DecodeReason.INVALID_JSON),
    ("array", j([GOOD]), DecodeReason.NOT_AN_OBJECT),
    ("string", j("text"), DecodeReason.NOT_AN_OBJECT),
    ("null", b"null", DecodeReason.NOT_AN_OBJECT),
    ("missing review_id", j({k: v for k, v in GOOD.items() if k != "review_id"}), DecodeReason.MISSING_REVIEW_ID),
    ("missing product_id", j({k: v for k, v in GOOD.items() if k != "product_id"}),
     DecodeReason.MISSING_PRODUCT_ID),
    ("missing text", j({k: v for k, v in GOOD.items() if k != "text"}), DecodeReason.MISSING_TEXT),
    ("null text", j({**GOOD, "text": None}), DecodeReason.MISSING_TEXT),
    ("empty review_id", j({**GOOD, "review_id": ""}), DecodeReason.EMPTY_REVIEW_ID),
    ("blank product_id", j({**GOOD, "product_id": "   "}), DecodeReason.EMPTY_PRODUCT_ID),
    ("empty text", j({**GOOD, "text": ""}), DecodeReason.EMPTY_TEXT),
    ("whitespace text", j({**GOOD, "text": " \n\t "}), DecodeReason.EMPTY_TEXT),
    ("numeric review_id", j({**GOOD, "review_id": 17}), DecodeReason.WRONG_TYPE),
    ("list text", j({**GOOD, "text": ["a"]}), DecodeReason.WRONG_TYPE),
    ("string rating", j({**GOOD, "rating": "five"}), DecodeReason.WRONG_TYPE),
    ("bool verified as string", j({**GOOD, "verified": "yes"}), DecodeReason.WRONG_TYPE),
    ("rating out of range", j({**GOOD, "rating": 9}), DecodeReason.INVALID_FIELD),
    ("text too long", j({**GOOD, "text": "a" * (MAX_TEXT_BYTES + 1)}), DecodeReason.TEXT_TOO_LONG),
    ("multibyte text too long", j({**GOOD, "text": "é" * (MAX_TEXT_BYTES // 2 + 1)}), DecodeReason.TEXT_TOO_LONG),
    ("raw control character in JSON", b'{"review_id": "r", "product_id": "p", "text": "a\x07b"}',
     DecodeReason.INVALID_JSON),
    ("text of control characters only", j({**GOOD, "text": "\u0000\u0007\u001b"}), DecodeReason.EMPTY_TEXT),
    ("random bytes", bytes(range(256)), DecodeReason.INVALID_UTF8),
    ("unknown schema version", j({**GOOD, "schema_version": 99}), DecodeReason.UNKNOWN_SCHEMA_VERSION),
    ("schema version as string", j({**GOOD, "schema_version": "1"}), DecodeReason.WRONG_TYPE),
]


@pytest.mark.parametrize(("name", "raw", "reason"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_gets_its_reason(name: str, raw: bytes | None, reason: DecodeReason) -> None:
    result = decode_review(raw)
    assert isinstance(result, DecodeFailure), name
    assert result.reason is reason, result.detail
    assert result.detail
    assert result.raw == raw  # the original bytes travel to the DLQ untouched


def test_valid_review_with_every_optional_field() -> None:
    raw = j({**GOOD, "title": "Nice", "rating": 4, "category": "Tools", "timestamp": "2024-05-01T10:00:00Z",
             "verified": True, "user_id": "u9", "unknown_extra": 1, "schema_version": 1})
    review = decode_review(raw)
    assert isinstance(review, Review)
    assert review.rating == 4
    assert review.timestamp == pytest.approx(1714557600.0)
    assert review.model_text() == "Nice. Works fine."


def test_escaped_control_characters_are_removed_from_text() -> None:
    review = decode_review(j({**GOOD, "text": "Good\u0000 ki\u0007ttle\ttoo\n", "title": "T\u001bop"}))
    assert isinstance(review, Review)
    assert review.text == "Good kittle\ttoo\n" and review.title == "Top"


def test_text_at_the_limit_is_accepted() -> None:
    assert isinstance(decode_review(j({**GOOD, "text": "a" * MAX_TEXT_BYTES})), Review)


def test_review_round_trips_through_bytes() -> None:
    review = Review(review_id="r", product_id="p", text="t", timestamp=1767225600.5)
    assert decode_review(review.to_bytes()) == review


def test_error_class_separates_bytes_from_contract() -> None:
    bad_json = decode_review(b"{")
    missing = decode_review(j({"text": "x"}))
    assert isinstance(bad_json, DecodeFailure) and bad_json.error_class == "DecodeError"
    assert isinstance(missing, DecodeFailure) and missing.error_class == "ContractError"


def test_dead_letter_headers_round_trip() -> None:
    failure = decode_review(b"\xff")
    assert isinstance(failure, DecodeFailure)
    dl = DeadLetter.from_failure(failure, "reviews", 3, 42)
    back = DeadLetter.from_headers(dl.headers(), b"\xff")
    assert back == dl
    assert back.reason == "invalid_utf8" and back.source.offset == 42


def test_dead_letter_from_foreign_headers_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not a dead-letter record"):
        DeadLetter.from_headers([("x", b"y")], b"")


def test_enriched_record_validates_rating_range() -> None:
    base: dict[str, Any] = dict(
        review_id="r", product_id="p", model_name="m", model_version="1", processed_at=1.0, processing_ms=1.0,
        source=SourceCoordinates(topic="t", partition=0, offset=0),
        sentiment=SentimentResult(label="positive", confidence=0.9,
                                  probabilities={"negative": 0.05, "neutral": 0.05, "positive": 0.9}),
        aspects={}, aspects_detected=[],
    )
    assert EnrichedRecord(rating=4.2, **base).rating == 4.2
    with pytest.raises(ValueError):
        EnrichedRecord(rating=5.5, **base)


def _review(**fields: object) -> Review | Retraction | DecodeFailure:
    return decode_review(json.dumps({"review_id": "r1", "product_id": "p1", "text": "fine", **fields}).encode())


def test_a_json_rating_of_five_point_zero_is_five_and_fractions_are_still_refused() -> None:
    ok = _review(rating=5.0)
    assert isinstance(ok, Review) and ok.rating == 5
    assert isinstance(_review(rating=4.5), DecodeFailure)
    assert isinstance(_review(rating=6.0), DecodeFailure)


def test_control_characters_in_ids_are_refused() -> None:
    for field_name in ("review_id", "product_id"):
        failure = _review(**{field_name: "a\x1b[2Jb"})
        assert isinstance(failure, DecodeFailure) and failure.reason is DecodeReason.INVALID_FIELD
        assert field_name in failure.detail


def test_implausible_or_zoneless_timestamps_are_refused() -> None:
    assert isinstance(_review(timestamp="2026-01-01T00:00:00Z"), Review)
    assert isinstance(_review(timestamp=1767225600), Review)
    for bad in ("2026-01-01T00:00:00", 1e300, -5, 4102444800 * 10, "0001-01-01T00:00:00+00:00"):
        failure = _review(timestamp=bad)
        assert isinstance(failure, DecodeFailure), bad
        assert "timestamp" in failure.detail


def test_a_delete_needs_only_the_ids_and_becomes_a_retraction() -> None:
    raw = json.dumps({"op": "delete", "review_id": "r1", "product_id": "p1", "version": 3}).encode()
    result = decode_review(raw)
    assert isinstance(result, Retraction) and (result.review_id, result.product_id, result.version) == ("r1", "p1", 3)
    missing = decode_review(json.dumps({"op": "delete", "review_id": "r1"}).encode())
    assert isinstance(missing, DecodeFailure) and missing.reason is DecodeReason.MISSING_PRODUCT_ID
    unknown = _review(op="purge")
    assert isinstance(unknown, DecodeFailure) and unknown.reason is DecodeReason.INVALID_FIELD
    assert isinstance(validate_review_object({"op": "delete", "review_id": "r", "product_id": "p"}), DecodeFailure)


def test_a_version_is_a_non_negative_integer() -> None:
    ok = _review(version=2)
    assert isinstance(ok, Review) and ok.version == 2
    assert isinstance(_review(version=-1), DecodeFailure)
    assert isinstance(_review(version="2"), DecodeFailure)


@pytest.mark.parametrize(("new", "old", "expected"), [
    ((2, None), (1, None), True),
    ((1, None), (1, None), False),
    ((1, None), (2, 10.0), False),
    ((None, 20.0), (None, 10.0), True),
    ((None, 10.9), (None, 10.0), False),  # whole seconds, as the script stores them
    ((2, 5.0), (None, 10.0), False),  # a version against none: not comparable, a re-send
    ((None, None), (None, None), False),
])
def test_supersedes_orders_by_version_then_by_event_time(
    new: tuple[int | None, float | None], old: tuple[int | None, float | None], expected: bool
) -> None:
    assert supersedes(new[0], new[1], old[0], old[1]) is expected
