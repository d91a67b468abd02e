"""Dead letters fit the DLQ: a value past the cap is cut, with its full size and hash in headers."""

from __future__ import annotations

import hashlib

from consumer.processing import InMessage, dead_letter_record
from reviews_mtl.contracts import DecodeFailure, DecodeReason


def _headers(rec: object) -> dict[str, bytes]:
    return {name: value for name, value in rec.headers or []}  # type: ignore[attr-defined,misc]


def test_a_small_bad_value_is_kept_whole() -> None:
    msg = InMessage("in", 2, 7, b"k", b"{not json")
    rec = dead_letter_record(msg, DecodeFailure(DecodeReason.INVALID_JSON, "bad", msg.value), max_value_bytes=1024)
    assert rec.value == b"{not json"
    headers = _headers(rec)
    assert headers["x-source-offset"] == b"7" and "x-original-size" not in headers


def test_a_bad_value_past_the_cap_is_cut_with_its_size_and_hash() -> None:
    value = b"\xff" * 5000
    msg = InMessage("in", 0, 3, b"k", value)
    rec = dead_letter_record(msg, DecodeFailure(DecodeReason.INVALID_UTF8, "bad", value), max_value_bytes=1024)
    assert rec.value == value[:1024]
    headers = _headers(rec)
    assert headers["x-original-size"] == b"5000"
    assert headers["x-original-sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["x-error-reason"] == b"invalid_utf8"
