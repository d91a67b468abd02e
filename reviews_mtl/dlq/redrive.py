"""Re-publishing selected dead letters' originals to the input topic, each at most once.

The DLQ record's value is the original message's bytes and its key the original key, so the re-driven
message lands on the same partition as a fresh one would. It carries one extra header, ``x-redriven-from``
(the dead letter's DLQ coordinates), for tracing; the worker ignores headers. Dead letters cut to fit the
DLQ (header ``x-original-size``) and records whose headers are not a dead letter's are skipped: the DLQ
copy is not the original.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer

from reviews_mtl.dlq.ledger import RedriveLedger
from reviews_mtl.dlq.reader import DeadLetterEntry

logger = logging.getLogger(__name__)

HEADER_REDRIVEN_FROM = "x-redriven-from"


@dataclass(slots=True)
class RedriveReport:
    """What one re-drive did (or, with ``dry_run``, would do); lists hold source coordinates."""

    to_topic: str
    dry_run: bool
    selected: int = 0
    sent: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # DLQ coordinates: there is no source to name
    failed: dict[str, str] = field(default_factory=dict)  # delivery failed: claim released, try again later
    unknown: list[str] = field(default_factory=list)  # no delivery report in time: left claimed (at most once)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unknown


def redrive(
    entries: Iterable[DeadLetterEntry],
    ledger: RedriveLedger,
    producer: Producer | None,
    to_topic: str,
    *,
    dry_run: bool = False,
    flush_timeout_s: float = 30.0,
) -> RedriveReport:
    """Re-publish the originals of ``entries`` to ``to_topic``; ``producer`` may be None for a dry run."""
    report = RedriveReport(to_topic=to_topic, dry_run=dry_run)
    candidates: list[DeadLetterEntry] = []
    for entry in entries:
        report.selected += 1
        if entry.source is None:
            report.unreadable.append(entry.where)
        elif entry.cut:
            report.cut.append(entry.source)
        else:
            candidates.append(entry)
    done = ledger.already(e.source for e in candidates if e.source)
    # The same original dead-lettered twice (a replayed batch on a broker without transactions): send it once.
    fresh: dict[str, DeadLetterEntry] = {}
    for entry in candidates:
        source = entry.source or ""
        if source in done or source in fresh:
            report.already.append(source)
        else:
            fresh[source] = entry
    if dry_run:
        report.sent = list(fresh)
        return report
    if producer is None:
        raise ValueError("a re-drive that is not a dry run needs a producer")
    outcome: dict[str, KafkaError | Message] = {}
    claimed: dict[str, DeadLetterEntry] = {}
    for source, entry in fresh.items():
        if not ledger.claim(source, entry.where):
            report.already.append(source)  # a concurrent re-drive took it
            continue
        claimed[source] = entry
        try:
            _produce(producer, to_topic, entry, _recorder(outcome, source))
        except Exception:
            ledger.release(source)  # never handed to the client: nothing went out
            raise
    producer.flush(flush_timeout_s)
    for source, entry in claimed.items():
        result = outcome.get(source)
        if result is None:
            report.unknown.append(source)
        elif isinstance(result, KafkaError):
            ledger.release(source)
            report.failed[source] = result.str()
        else:
            ledger.confirm(source, entry.where, f"{result.topic()}:{result.partition()}:{result.offset()}")
            report.sent.append(source)
    return report


DeliveryCallback = Callable[[KafkaError | None, Message], None]


def _recorder(outcome: dict[str, KafkaError | Message], source: str) -> DeliveryCallback:
    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        outcome[source] = err if err is not None else msg

    return on_delivery


def _produce(producer: Producer, topic: str, entry: DeadLetterEntry, on_delivery: DeliveryCallback) -> None:
    while True:
        try:
            producer.produce(topic, value=entry.value, key=entry.key,
                             headers=[(HEADER_REDRIVEN_FROM, entry.where.encode())], on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.1)  # local queue full: let deliveries drain
