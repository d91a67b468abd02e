"""Turn one micro-batch of messages into what goes out: enriched records, dead letters, Redis updates.

Pure logic over injected collaborators (a predictor and the aggregate store), so it is unit-testable
without a broker. Messages at or below a partition's Redis watermark were applied by an earlier attempt:
those of the last applied batch are re-published from Redis's copy (after checking that the copy is of the
same review at the same offset) instead of being predicted again, so the output topic always carries exactly
what the aggregates counted; older ones were committed long ago and are skipped with an integrity alarm.
A re-send (a review neither new nor newer than what is counted) is published nowhere: it is counted in a metric.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from consumer.live_quality import Observed
from consumer.records import record_bytes
from reviews_mtl.aggregates.keys import review_state_address
from reviews_mtl.aggregates.store import AppliedRecord, ApplyResult, LastAppliedBatch, PartitionBatch, Violation
from reviews_mtl.contracts import (
    DLQ_HEADER_ORIGINAL_SHA256,
    DLQ_HEADER_ORIGINAL_SIZE,
    DeadLetter,
    DecodeFailure,
    DecodeReason,
    EnrichedRecord,
    Prediction,
    Retraction,
    RetractionRecord,
    Review,
    SourceCoordinates,
    decode_review,
    published_rating,
)

log = logging.getLogger(__name__)

PartitionKey = tuple[str, int]  # (topic, partition)


class Predictor(Protocol):
    """The model runtime as the worker sees it (see ``reviews_mtl.model.runtime``)."""

    model_name: str
    model_version: str
    runtime: str

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...


class AggregateSink(Protocol):
    """The part of ``AggregateStore`` the worker writes through."""

    def watermarks_for(self, partitions: Sequence[PartitionKey]) -> dict[PartitionKey, int]: ...

    def last_applied_batch(self, topic: str, partition: int) -> LastAppliedBatch: ...

    def apply_batch(self, parts: Sequence[PartitionBatch], *, lock: str = "", alerts: bool = True) -> ApplyResult: ...


@dataclass(frozen=True, slots=True)
class InMessage:
    """The parts of a consumed Kafka message the worker uses."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class OutRecord:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]] | None = None


@dataclass(slots=True)
class BatchOutput:
    """Everything one batch produces; ``next_offsets`` is what to commit per partition.

    With ``violations`` nothing of the batch was applied and nothing may be published or committed: the worker
    sets those partitions aside and reads the others again.
    """

    enriched: list[OutRecord] = field(default_factory=list)
    dead_letters: list[OutRecord] = field(default_factory=list)
    dead_letter_reasons: list[str] = field(default_factory=list)
    next_offsets: dict[PartitionKey, int] = field(default_factory=dict)
    event_times: list[float] = field(default_factory=list)
    replayed: int = 0
    resends: int = 0
    edits: int = 0
    deletes: int = 0
    # Messages below the watermark and older than the last applied batch (an offset reset, a new group on old
    # aggregates): committed long ago, so skipped; by partition, for the worker's integrity alarm.
    below_watermark: dict[PartitionKey, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    # Alerts of this batch (or of the earlier attempt it replays), for the alerts topic.
    alerts: list[OutRecord] = field(default_factory=list)
    # What the model said of each review counted now (not replays), for the live-quality gauges.
    observed: list[Observed] = field(default_factory=list)
    inference_s: float = 0.0
    # A shadow model's records of this batch (``consumer.shadow``): published in the same transaction, to the
    # shadow topic only, never applied to the aggregates.
    shadow: list[OutRecord] = field(default_factory=list)


@dataclass(slots=True)
class _Decoded:
    """A message that decoded to a review or a retraction, and what this batch makes of it."""

    msg: InMessage
    review: Review | Retraction
    record: EnrichedRecord | None = None
    payload: bytes | None = None  # the record as published (enriched record or retraction record)
    replayed: bool = False

    @property
    def is_review(self) -> bool:
        return isinstance(self.review, Review)


# What a dead letter may carry of the original value by default: well under Kafka's default 1 MB message limit,
# so a bad value close to the input topic's limit still fits on the DLQ with its headers.
DEAD_LETTER_MAX_VALUE_BYTES = 256 * 1024


def dead_letter_record(msg: InMessage, failure: DecodeFailure,
                       max_value_bytes: int = DEAD_LETTER_MAX_VALUE_BYTES) -> OutRecord:
    """The DLQ record of a bad message: its original bytes and the reason headers. A value past
    ``max_value_bytes`` is cut to that size, with its full size and SHA-256 in headers; the whole
    original stays at its source coordinates."""
    dl = DeadLetter.from_failure(failure, msg.topic, msg.partition, msg.offset)
    headers: list[tuple[str, str | bytes | None]] = list(dl.headers())
    value = msg.value
    if value is not None and len(value) > max_value_bytes:
        headers += [(DLQ_HEADER_ORIGINAL_SIZE, str(len(value)).encode()),
                    (DLQ_HEADER_ORIGINAL_SHA256, hashlib.sha256(value).hexdigest().encode())]
        value = value[:max_value_bytes]
    return OutRecord(msg.key, value, headers)


class BatchProcessor:
    def __init__(
        self,
        predictor: Predictor,
        store: AggregateSink,
        clock: Callable[[], float] = time.time,
        dead_letter_max_value_bytes: int = DEAD_LETTER_MAX_VALUE_BYTES,
    ) -> None:
        self.predictor = predictor
        self.store = store
        self.clock = clock
        self.dead_letter_max_value_bytes = dead_letter_max_value_bytes

    def process(
        self,
        messages: Sequence[InMessage],
        starts: Mapping[PartitionKey, int] | None = None,
        topic_ids: Mapping[str, str] | None = None,
    ) -> BatchOutput:
        """Decode, predict, apply to Redis (atomically, idempotently) and return what to publish.

        ``starts``: per partition, the offset the consumer started from (its committed offset), and
        ``topic_ids``: the input topics' ids; with them Redis refuses a batch it cannot apply safely (see
        :class:`Violation`). Raises ``redis.RedisError`` when Redis is unreachable: nothing is then applied and
        the caller retries the same batch.
        """
        out = BatchOutput()
        starts = starts or {}
        topic_ids = topic_ids or {}
        decoded: list[_Decoded | tuple[InMessage, DecodeFailure]] = []
        firsts: dict[PartitionKey, int] = {}
        for msg in messages:
            tp = (msg.topic, msg.partition)
            out.next_offsets[tp] = msg.offset + 1
            firsts.setdefault(tp, msg.offset)
            try:
                value = decode_review(msg.value)
            except Exception as exc:  # the decoder never raises; if it ever does, dead-letter
                value = _internal_error("decoding", exc, msg.value)
            decoded.append((msg, value) if isinstance(value, DecodeFailure) else _Decoded(msg, value))

        watermarks = self.store.watermarks_for(sorted(out.next_offsets))
        decoded, carried_silent, carried_alerts = self._reuse_applied(decoded, watermarks, out)
        if out.violations:
            return out
        valid = [d for d in decoded if isinstance(d, _Decoded)]
        broken = {id(v): failure for v, failure in self._predict(valid, out)}

        parts = {tp: PartitionBatch(*tp, start=starts.get(tp, -1), topic_id=topic_ids.get(tp[0], ""), first=first)
                 for tp, first in firsts.items()}
        final: list[_Decoded | tuple[InMessage, DecodeFailure]] = []
        for d in decoded:
            if isinstance(d, _Decoded) and id(d) in broken:
                d = (d.msg, broken[id(d)])
            final.append(d)
            if isinstance(d, tuple):
                msg, failure = d
                part = parts[(msg.topic, msg.partition)]
                part.dead_offsets.append(msg.offset)
                if failure.reason is DecodeReason.INTERNAL_ERROR:
                    part.failed[msg.offset] = failure.detail
                continue
            part = parts[(d.msg.topic, d.msg.partition)]
            assert d.payload is not None
            if d.replayed:
                part.carried[d.msg.offset] = d.payload
            else:
                part.records.append(self._applied(d))
        for tp, addresses in carried_silent.items():
            parts[tp].carried_silent.update(addresses)
        for tp, alerts in carried_alerts.items():
            parts[tp].carried_alerts.extend(alerts)
        result = self.store.apply_batch(list(parts.values()))
        if result.violations:
            out.violations = list(result.violations)
            return out
        out.alerts = [_alert_record(a) for alerts in carried_alerts.values() for a in alerts]
        out.alerts += [_alert_record(a) for a in result.alerts]
        out.edits, out.deletes = result.edits, result.deletes
        silent = {tp: set(offsets) for tp, offsets in result.silent.items()}
        for d in final:
            if isinstance(d, tuple):
                msg, failure = d
                out.dead_letters.append(dead_letter_record(msg, failure, self.dead_letter_max_value_bytes))
                out.dead_letter_reasons.append(failure.reason.value)
            elif d.msg.offset in silent.get((d.msg.topic, d.msg.partition), ()):
                out.resends += 1
            else:
                out.enriched.append(OutRecord(d.review.product_id.encode("utf-8"), d.payload))
                if d.review.timestamp is not None and not d.replayed:
                    out.event_times.append(d.review.timestamp)
                if d.record is not None:
                    rec = d.record
                    out.observed.append(Observed(rec.true_rating, rec.rating, rec.sentiment.label,
                                                 tuple(rec.aspects_detected), rec.stars))
        return out

    def check(self, partitions: Sequence[PartitionKey], starts: Mapping[PartitionKey, int],
              topic_ids: Mapping[str, str]) -> list[Violation]:
        """The store's checks for these partitions, with nothing to apply (see :class:`Violation`)."""
        parts = [PartitionBatch(t, p, start=starts.get((t, p), -1), topic_id=topic_ids.get(t, ""))
                 for t, p in partitions]
        return list(self.store.apply_batch(parts).violations)

    def _reuse_applied(
        self,
        decoded: list[_Decoded | tuple[InMessage, DecodeFailure]],
        watermarks: Mapping[PartitionKey, int],
        out: BatchOutput,
    ) -> tuple[list[_Decoded | tuple[InMessage, DecodeFailure]], dict[PartitionKey, dict[int, str]],
               dict[PartitionKey, list[bytes]]]:
        """Messages at or below the watermark: take those of the last applied batch from Redis's copy (checked:
        the same review at the same offset), drop older ones. Returns the messages to go on with, and the re-sends
        and alerts to carry into the new copy; fills ``out.violations`` on a mismatch."""
        carried_silent: dict[PartitionKey, dict[int, str]] = {}
        carried_alerts: dict[PartitionKey, list[bytes]] = {}
        copies: dict[PartitionKey, LastAppliedBatch] = {}
        kept: list[_Decoded | tuple[InMessage, DecodeFailure]] = []
        mismatched: dict[PartitionKey, str] = {}
        for d in decoded:
            msg = d[0] if isinstance(d, tuple) else d.msg
            tp = (msg.topic, msg.partition)
            if msg.offset > watermarks.get(tp, -1):
                kept.append(d)
                continue
            if tp not in copies:
                copies[tp] = self.store.last_applied_batch(*tp)
            copy = copies[tp]
            if msg.offset < copy.first or copy.first < 0:
                out.below_watermark[tp] = out.below_watermark.get(tp, 0) + 1
                continue
            problem = _identity_problem(d, copy)
            if problem is not None:
                mismatched.setdefault(tp, f"offset {msg.offset}: {problem}")
                continue
            # The alerts belong to the copy's first message: a replay split over batches publishes them once.
            if copy.alerts and msg.offset == copy.first and tp not in carried_alerts:
                carried_alerts[tp] = list(copy.alerts)
            if isinstance(d, _Decoded) and msg.offset in copy.failed:
                # The worker failed on it the first time: dead-lettered with that reason, again, not predicted now.
                d = (msg, DecodeFailure(DecodeReason.INTERNAL_ERROR, copy.failed[msg.offset], msg.value))
            elif isinstance(d, _Decoded):
                stored = copy.records.get(msg.offset)
                if stored is None:  # a re-send the first time: again nothing to publish
                    carried_silent.setdefault(tp, {})[msg.offset] = copy.silent[msg.offset]
                    continue
                d.payload = json.dumps(stored, separators=(",", ":")).encode("utf-8")
                d.replayed = True
                out.replayed += 1
            kept.append(d)
        out.violations = [Violation(t, p, "identity", detail) for (t, p), detail in sorted(mismatched.items())]
        return kept, carried_silent, carried_alerts

    def _predict(self, valid: list[_Decoded], out: BatchOutput) -> list[tuple[_Decoded, DecodeFailure]]:
        """Predict the new reviews and build every new record; returns the messages that broke the model or the
        record builder (dead letters of class ``internal_error``: a poison review must never crash-loop every
        replica)."""
        todo = [v for v in valid if not v.replayed and v.is_review]
        broken: list[tuple[_Decoded, DecodeFailure]] = []
        now = self.clock()
        for v in valid:
            if not v.replayed and isinstance(v.review, Retraction):
                v.payload = _retraction_record(v, now).to_bytes()
        if not todo:
            return broken
        started = time.perf_counter()
        texts = [cast(Review, v.review).model_text() for v in todo]
        try:
            predictions: list[Prediction | None] = list(self.predictor.predict(texts))
        except Exception:  # find the poison one by one, below
            log.exception("the model failed on a batch of %d; predicting one by one", len(todo))
            predictions = [self._predict_one(v, text, broken) for v, text in zip(todo, texts, strict=True)]
        out.inference_s = time.perf_counter() - started
        per_review_ms = 1000.0 * out.inference_s / len(todo)
        for v, pred in zip(todo, predictions, strict=True):
            if pred is None:
                continue
            try:
                v.record = self._record(v, pred, now, per_review_ms)
                v.payload = record_bytes(v.record)  # serialized once (consumer.records)
            except Exception as exc:  # a record that cannot be built is a dead letter
                v.record = None
                broken.append((v, _internal_error("building the enriched record", exc, v.msg.value)))
        return broken

    def _predict_one(self, v: _Decoded, text: str, broken: list[tuple[_Decoded, DecodeFailure]]) -> Prediction | None:
        try:
            return self.predictor.predict([text])[0]
        except Exception as exc:
            broken.append((v, _internal_error("the model", exc, v.msg.value)))
            return None

    @staticmethod
    def _applied(v: _Decoded) -> AppliedRecord:
        assert v.payload is not None
        r = v.review
        if isinstance(r, Retraction):
            return AppliedRecord(offset=v.msg.offset, review_id=r.review_id, product_id=r.product_id, sentiment="",
                                 rating=0.0, aspects=(), seen_at=r.timestamp or 0.0, enriched=v.payload,
                                 version=r.version, event_time=r.timestamp, delete=True)
        rec = v.record
        assert rec is not None
        return AppliedRecord(
            offset=v.msg.offset,
            review_id=rec.review_id,
            product_id=rec.product_id,
            sentiment=rec.sentiment.label,
            rating=rec.rating,
            aspects=rec.aspects_detected,
            seen_at=rec.timestamp if rec.timestamp is not None else rec.processed_at,
            enriched=v.payload,
            version=rec.version,
            event_time=rec.timestamp,
            true_rating=rec.true_rating,
            model_version=rec.model_version,
            text=r.text,
            predicted_at=rec.processed_at,
            stars=rec.stars,
        )

    def _record(self, v: _Decoded, pred: Prediction, now: float, per_review_ms: float) -> EnrichedRecord:
        r = cast(Review, v.review)
        return EnrichedRecord.model_construct(
            schema_version=1,
            review_id=r.review_id,
            product_id=r.product_id,
            true_rating=r.rating,
            category=r.category,
            timestamp=r.timestamp,
            sentiment=pred.sentiment,
            rating=published_rating(pred.rating),
            stars=pred.stars,
            aspects=pred.aspects,
            aspects_detected=pred.aspects_detected,
            model_name=self.predictor.model_name,
            model_version=self.predictor.model_version,
            model_runtime=self.predictor.runtime,
            processed_at=now,
            processing_ms=per_review_ms,
            source=SourceCoordinates.model_construct(topic=v.msg.topic, partition=v.msg.partition,
                                                     offset=v.msg.offset),
            version=r.version,
        )


def _alert_record(body: bytes) -> OutRecord:
    """An alert for the alerts topic, keyed by its product like everything else."""
    product = json.loads(body).get("product_id", "")
    return OutRecord(str(product).encode("utf-8"), body)


def _retraction_record(v: _Decoded, now: float) -> RetractionRecord:
    r = v.review
    return RetractionRecord.model_construct(
        schema_version=1, op="delete", review_id=r.review_id, product_id=r.product_id, version=r.version,
        timestamp=r.timestamp, processed_at=now,
        source=SourceCoordinates.model_construct(topic=v.msg.topic, partition=v.msg.partition, offset=v.msg.offset),
    )


def _identity_problem(d: _Decoded | tuple[InMessage, DecodeFailure], copy: LastAppliedBatch) -> str | None:
    """Why the message at a replayed offset is not the one Redis counted there (None when it is)."""
    msg = d[0] if isinstance(d, tuple) else d.msg
    stored = copy.records.get(msg.offset)
    address = copy.silent.get(msg.offset)
    if isinstance(d, tuple):
        return None if stored is None and address is None else "Redis counted a review here, the message is bad input"
    if msg.offset in copy.failed:
        return None
    if stored is not None:
        source = stored.get("source") or {}
        same = (stored.get("review_id") == d.review.review_id and stored.get("product_id") == d.review.product_id
                and source.get("offset") == msg.offset and source.get("partition") == msg.partition
                and source.get("topic") == msg.topic)
        return None if same else (f"Redis counted review {stored.get('review_id')!r} of {stored.get('product_id')!r} "
                                  f"here, the message is {d.review.review_id!r} of {d.review.product_id!r}")
    if address is not None:
        if not address:  # kept by an older worker without an address
            return None
        return None if address == ":".join(review_state_address(d.review.product_id, d.review.review_id)) \
            else "Redis kept another re-sent review here"
    return "Redis kept no record of this offset in the last applied batch"


def _internal_error(where: str, exc: BaseException, raw: bytes | None) -> DecodeFailure:
    return DecodeFailure(DecodeReason.INTERNAL_ERROR, f"{where} failed: {type(exc).__name__}: {exc}"[:300], raw)
