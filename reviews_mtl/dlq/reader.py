"""Reading the dead-letter topic: one :class:`DeadLetterEntry` per record (read_committed), counts by reason."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from reviews_mtl.aggregates.keys import source_field
from reviews_mtl.contracts import DLQ_HEADER_ORIGINAL_SIZE, DeadLetter
from reviews_mtl.dlq.selection import Selection
from reviews_mtl.kafka import scan_topic
from reviews_mtl.settings import KafkaSettings

# The reason shown for a DLQ record whose headers are not a dead letter's (written by hand, another tool).
UNREADABLE = "(unreadable headers)"


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """One DLQ record: where it sits on the DLQ, the dead letter its headers describe, and its value."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    letter: DeadLetter | None  # None when the headers are unreadable (``problem`` says why)
    problem: str | None = None
    original_size: int | None = None  # set when the value was cut to fit the DLQ (or dropped)

    @property
    def reason(self) -> str:
        return self.letter.reason if self.letter is not None else UNREADABLE

    @property
    def cut(self) -> bool:
        """The DLQ holds only part of the original (or none of it): it cannot be re-driven from here."""
        return self.original_size is not None

    @property
    def source(self) -> str | None:
        """``topic:partition:offset`` of the original message, the re-drive ledger's field."""
        if self.letter is None:
            return None
        s = self.letter.source
        return source_field(s.topic, s.partition, s.offset)

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def _original_size(headers: list[tuple[str, bytes]]) -> int | None:
    value = next((v for k, v in headers if k == DLQ_HEADER_ORIGINAL_SIZE), None)
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return int(text) if text.isdigit() else -1  # present but unreadable: still cut


def entry_from_message(message: Message) -> DeadLetterEntry:
    headers = cast(list[tuple[str, bytes]], message.headers() or [])
    timestamp_type, timestamp = message.timestamp()
    letter: DeadLetter | None = None
    problem: str | None = None
    try:
        letter = DeadLetter.from_headers(headers, message.value())
    except ValueError as exc:
        problem = str(exc)
    return DeadLetterEntry(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp_ms=None if timestamp_type == TIMESTAMP_NOT_AVAILABLE else timestamp,
        key=message.key(),
        value=message.value(),
        letter=letter,
        problem=problem,
        original_size=_original_size(headers),
    )


def read_dead_letters(
    kafka: KafkaSettings, dlq_topic: str, selection: Selection, timeout_s: float = 60.0
) -> Iterator[DeadLetterEntry]:
    """The selected dead letters, oldest first, read with read_committed (an aborted batch's dead letters
    never show up); stops after ``selection.limit``."""
    picked = 0
    scan = scan_topic(kafka, dlq_topic, isolation="read_committed", since_ms=selection.since_ms,
                      timeout_s=timeout_s, idle_s=5.0)
    try:
        for message in scan:
            entry = entry_from_message(message)
            if selection.since_ms is not None and (entry.timestamp_ms or 0) < selection.since_ms:
                continue  # offsets-for-times finds the first record at or after; later ones may be older
            if not selection.wants_reason(entry.reason):
                continue
            yield entry
            picked += 1
            if selection.limit is not None and picked >= selection.limit:
                return
    finally:
        scan.close()


@dataclass(slots=True)
class ReasonSummary:
    """The dead letters of one reason: how many, the time span, how many were cut, a few samples."""

    reason: str
    count: int = 0
    cut: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    samples: list[DeadLetterEntry] = field(default_factory=list)


def summarize(entries: Iterable[DeadLetterEntry], samples: int = 3) -> list[ReasonSummary]:
    """Counts by reason, most frequent first, each with up to ``samples`` of its oldest dead letters."""
    by_reason: dict[str, ReasonSummary] = {}
    for entry in entries:
        summary = by_reason.setdefault(entry.reason, ReasonSummary(entry.reason))
        summary.count += 1
        summary.cut += entry.cut
        if entry.timestamp_ms is not None:
            summary.first_ms = min(summary.first_ms or entry.timestamp_ms, entry.timestamp_ms)
            summary.last_ms = max(summary.last_ms or entry.timestamp_ms, entry.timestamp_ms)
        if len(summary.samples) < samples:
            summary.samples.append(entry)
    return sorted(by_reason.values(), key=lambda s: (-s.count, s.reason))
