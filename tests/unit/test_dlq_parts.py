"""The DLQ tool's parts without servers: --since, escaping, counts by reason, the re-drive rules."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError

from reviews_mtl.contracts import DeadLetter, SourceCoordinates
from reviews_mtl.dlq.ledger import RedriveLedger
from reviews_mtl.dlq.reader import UNREADABLE, DeadLetterEntry, summarize
from reviews_mtl.dlq.redrive import HEADER_REDRIVEN_FROM, redrive
from reviews_mtl.dlq.render import escape_value, render_entry
from reviews_mtl.dlq.selection import Selection, parse_since

NOW = 1_800_000_000.0


def test_since_accepts_durations_iso_times_and_epoch_seconds() -> None:
    assert parse_since("30m", now=NOW) == int((NOW - 1800) * 1000)
    assert parse_since("2h", now=NOW) == int((NOW - 7200) * 1000)
    assert parse_since("7d", now=NOW) == int((NOW - 7 * 86400) * 1000)
    assert parse_since("2026-12-01T00:00:00Z") == 1_796_083_200_000
    assert parse_since("1796083200") == 1_796_083_200_000
    for bad in ("yesterday", "2026-12-01T00:00:00", "5 parsecs"):
        with pytest.raises(ValueError, match="--since"):
            parse_since(bad)


def test_selection_bounds() -> None:
    with pytest.raises(ValueError, match="--limit"):
        Selection(limit=0)
    assert Selection().wants_reason("anything")
    assert not Selection(reasons=frozenset({"internal_error"})).wants_reason("invalid_json")


def test_values_are_shown_with_control_characters_escaped() -> None:
    assert escape_value(None) == "(no value)"
    assert escape_value(b"ok\ttab\nline\x1b[2J\x00") == "ok\\ttab\\nline\\x1b[2J\\x00"
    assert escape_value(b"\xff\xfe bad utf8 \\ backslash") == "\\xff\\xfe bad utf8 \\\\ backslash"
    assert escape_value("bidi \u202e trick".encode()) == "bidi \\u202e trick"
    assert escape_value(b"x" * 50, max_bytes=10) == "xxxxxxxxxx… (50 bytes)"


def entry(offset: int, reason: str = "internal_error", value: bytes | None = b'{"x": 1}', *,
          source_offset: int | None = None, cut: bool = False, unreadable: bool = False) -> DeadLetterEntry:
    letter = None if unreadable else DeadLetter(
        error_class="InternalError", reason=reason, detail="d",
        source=SourceCoordinates(topic="reviews", partition=1,
                                 offset=offset if source_offset is None else source_offset),
        raw=value)
    return DeadLetterEntry(topic="reviews.dlq", partition=0, offset=offset, timestamp_ms=1000 + offset, key=b"p1",
                           value=value, letter=letter, problem="not a dead-letter record" if unreadable else None,
                           original_size=9999 if cut else None)


def test_summary_counts_by_reason_most_frequent_first() -> None:
    entries = [entry(0), entry(1, "invalid_json"), entry(2), entry(3, cut=True), entry(4, unreadable=True)]
    summaries = summarize(entries, samples=2)
    assert [(s.reason, s.count, s.cut) for s in summaries] == [
        ("internal_error", 3, 1), (UNREADABLE, 1, 0), ("invalid_json", 1, 0)]
    assert [e.offset for e in summaries[0].samples] == [0, 2]
    assert (summaries[0].first_ms, summaries[0].last_ms) == (1000, 1003)
    assert "not re-drivable" in render_entry(entries[3], None)


class FakeRedis:
    """The four hash commands the ledger uses, in memory (the real ones run in the integration test)."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}

    def hmget(self, key: str, fields: list[str]) -> list[bytes | None]:
        h = self.hashes.get(key, {})
        return [h[f].encode() if f in h else None for f in fields]

    def hsetnx(self, key: str, field: str, value: str) -> int:
        h = self.hashes.setdefault(key, {})
        if field in h:
            return 0
        h[field] = value
        return 1

    def hset(self, key: str, field: str, value: str) -> int:
        self.hashes.setdefault(key, {})[field] = value
        return 1

    def hdel(self, key: str, field: str) -> int:
        return int(self.hashes.get(key, {}).pop(field, None) is not None)


class FakeMessage:
    def __init__(self, topic: str, offset: int) -> None:
        self._topic, self._offset = topic, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class FakeProducer:
    """Delivers on flush; values listed in ``refuse`` fail delivery."""

    def __init__(self, refuse: frozenset[bytes] = frozenset()) -> None:
        self.sent: list[dict[str, Any]] = []
        self.refuse = refuse
        self._pending: list[tuple[Any, bytes | None]] = []

    def produce(self, topic: str, value: bytes | None, key: bytes | None, headers: Any, on_delivery: Any) -> None:
        self._pending.append((on_delivery, value))
        self.sent.append({"topic": topic, "value": value, "key": key, "headers": headers})

    def flush(self, timeout: float) -> int:
        for i, (callback, value) in enumerate(self._pending):
            error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if value in self.refuse else None
            callback(error, FakeMessage("reviews", i))
        self._pending = []
        return 0

    def poll(self, timeout: float) -> int:
        return 0


def test_redrive_sends_each_original_once_and_skips_what_it_cannot() -> None:
    ledger = RedriveLedger(FakeRedis(), "t")  # type: ignore[arg-type]
    entries = [entry(0), entry(1), entry(2, source_offset=0), entry(3, cut=True), entry(4, unreadable=True)]

    dry = redrive(entries, ledger, None, "reviews", dry_run=True)
    assert (dry.sent, dry.already, dry.cut, dry.unreadable) == (
        ["reviews:1:0", "reviews:1:1"], ["reviews:1:0"], ["reviews:1:3"], ["reviews.dlq[0]@4"])
    assert ledger.already(["reviews:1:0", "reviews:1:1"]) == set()  # a dry run records nothing

    producer = FakeProducer()
    first = redrive(entries, ledger, producer, "reviews")  # type: ignore[arg-type]
    assert first.sent == ["reviews:1:0", "reviews:1:1"] and first.ok
    assert [(m["topic"], m["key"], m["headers"]) for m in producer.sent] == [
        ("reviews", b"p1", [(HEADER_REDRIVEN_FROM, b"reviews.dlq[0]@0")]),
        ("reviews", b"p1", [(HEADER_REDRIVEN_FROM, b"reviews.dlq[0]@1")])]

    second = redrive(entries, ledger, FakeProducer(), "reviews")  # type: ignore[arg-type]
    assert second.sent == [] and sorted(second.already) == ["reviews:1:0", "reviews:1:0", "reviews:1:1"]


def test_a_failed_delivery_is_not_recorded() -> None:
    ledger = RedriveLedger(FakeRedis(), "t")  # type: ignore[arg-type]
    failing = redrive([entry(0, value=b"big")], ledger, FakeProducer(frozenset({b"big"})), "reviews")  # type: ignore[arg-type]
    assert failing.failed == {"reviews:1:0": "Broker: Message size too large"} and not failing.ok
    assert ledger.already(["reviews:1:0"]) == set()
    retried = redrive([entry(0, value=b"big")], ledger, FakeProducer(), "reviews")  # type: ignore[arg-type]
    assert retried.sent == ["reviews:1:0"]
