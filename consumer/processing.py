"""Turn one micro-batch of messages into what goes out: enriched records, dead letters, Redis updates.

Pure logic over injected collaborators (a predictor and the aggregate store), so it is unit-testable
without a broker. Records at or below a partition's Redis watermark were already counted by an earlier
attempt: they are re-published from Redis's copy instead of being predicted again, so the output topic
always carries exactly what the aggregates counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from reviews_mtl.aggregates.store import AppliedRecord, ApplyResult, LastAppliedBatch, PartitionBatch
from reviews_mtl.contracts import (
    DLQ_HEADER_ORIGINAL_SHA256,
    DLQ_HEADER_ORIGINAL_SIZE,
    DeadLetter,
    DecodeFailure,
    DecodeReason,
    EnrichedRecord,
    Prediction,
    Review,
    SourceCoordinates,
    decode_review,
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

    def apply_batch(self, parts: Sequence[PartitionBatch]) -> ApplyResult: ...


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
    """Everything one batch produces; ``next_offsets`` is what to commit per partition."""

    enriched: list[OutRecord] = field(default_factory=list)
    dead_letters: list[OutRecord] = field(default_factory=list)
    dead_letter_reasons: list[str] = field(default_factory=list)
    next_offsets: dict[PartitionKey, int] = field(default_factory=dict)
    event_times: list[float] = field(default_factory=list)
    replayed: int = 0
    inference_s: float = 0.0


@dataclass(slots=True)
class _Decoded:
    """A message that decoded to a review, and what this batch makes of it."""

    msg: InMessage
    review: Review
    record: EnrichedRecord | None = None
    payload: bytes | None = None  # the enriched record as published
    replayed: bool = False


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

    def process(self, messages: Sequence[InMessage]) -> BatchOutput:
        """Decode, predict, apply to Redis (atomically, idempotently) and return what to publish.

        Raises ``redis.RedisError`` when Redis is unreachable: nothing is then applied and the caller
        retries the same batch.
        """
        out = BatchOutput()
        valid: list[_Decoded] = []
        failures: list[tuple[InMessage, DecodeFailure]] = []
        for msg in messages:
            out.next_offsets[(msg.topic, msg.partition)] = msg.offset + 1
            try:
                decoded = decode_review(msg.value)
            except Exception as exc:  # the decoder never raises; if it ever does, dead-letter
                decoded = _internal_error("decoding", exc, msg.value)
            if isinstance(decoded, DecodeFailure):
                failures.append((msg, decoded))
            else:
                valid.append(_Decoded(msg, decoded))

        watermarks = self.store.watermarks_for(sorted(out.next_offsets))
        inflight = self._reuse_applied(valid, watermarks)
        broken = self._predict(valid, out)
        if broken:
            failed = {id(v) for v, _ in broken}
            valid = [v for v in valid if id(v) not in failed]
            failures += [(v.msg, failure) for v, failure in broken]

        parts: dict[PartitionKey, PartitionBatch] = {}
        for v in valid:
            tp = (v.msg.topic, v.msg.partition)
            part = parts.setdefault(tp, PartitionBatch(*tp))
            rec = v.record
            if rec is None:
                assert v.payload is not None
                part.replayed[v.msg.offset] = v.payload
                if v.msg.offset in inflight[tp].duplicates:
                    part.replayed_duplicates.append(v.msg.offset)
                continue
            assert v.payload is not None
            part.records.append(AppliedRecord(
                offset=v.msg.offset,
                review_id=rec.review_id,
                product_id=rec.product_id,
                sentiment=rec.sentiment.label,
                rating=rec.rating,
                aspects=rec.aspects_detected,
                seen_at=rec.timestamp if rec.timestamp is not None else rec.processed_at,
                enriched=v.payload,
            ))
        for msg, _ in failures:
            parts.setdefault((msg.topic, msg.partition), PartitionBatch(msg.topic, msg.partition)) \
                .dead_offsets.append(msg.offset)
        result = self.store.apply_batch(list(parts.values()))

        duplicates = {tp: set(offsets) for tp, offsets in result.duplicates.items()}
        for tp, inf in inflight.items():
            duplicates.setdefault(tp, set()).update(inf.duplicates)
        for v in valid:
            tp = (v.msg.topic, v.msg.partition)
            if v.msg.offset in duplicates.get(tp, ()):
                failures.append((v.msg, DecodeFailure(
                    DecodeReason.DUPLICATE_REVIEW_ID,
                    f"review_id {v.review.review_id!r} was already counted for product {v.review.product_id!r}",
                    v.msg.value,
                )))
                continue
            out.enriched.append(OutRecord(v.review.product_id.encode("utf-8"), v.payload))
            if v.review.timestamp is not None:
                out.event_times.append(v.review.timestamp)
        for msg, failure in failures:
            out.dead_letters.append(dead_letter_record(msg, failure, self.dead_letter_max_value_bytes))
            out.dead_letter_reasons.append(failure.reason.value)
        return out

    def _reuse_applied(
        self, valid: list[_Decoded], watermarks: dict[PartitionKey, int]
    ) -> dict[PartitionKey, LastAppliedBatch]:
        """Take the records of already-applied offsets from Redis instead of predicting them again."""
        inflight: dict[PartitionKey, LastAppliedBatch] = {}
        for v in valid:
            tp = (v.msg.topic, v.msg.partition)
            if v.msg.offset > watermarks.get(tp, -1):
                continue
            if tp not in inflight:
                inflight[tp] = self.store.last_applied_batch(*tp)
            stored = inflight[tp].records.get(v.msg.offset)
            if stored is not None:
                v.payload = json.dumps(stored, separators=(",", ":")).encode("utf-8")
                v.replayed = True
            else:
                # Older than the last applied batch: it was committed, so the broker redelivered it only
                # after an offset reset. Publish a fresh prediction; the aggregates already hold it.
                log.warning("offset %s of %s:%s is below the watermark and not in flight", v.msg.offset, *tp)
        return inflight

    def _predict(self, valid: list[_Decoded], out: BatchOutput) -> list[tuple[_Decoded, DecodeFailure]]:
        """Predict what was not applied before; returns the reviews that broke the model or the record builder
        (dead letters of class ``internal_error``: a poison review must never crash-loop every replica)."""
        todo = [v for v in valid if not v.replayed]
        out.replayed = len(valid) - len(todo)
        if not todo:
            return []
        started = time.perf_counter()
        texts = [v.review.model_text() for v in todo]
        broken: list[tuple[_Decoded, DecodeFailure]] = []
        try:
            predictions: list[Prediction | None] = list(self.predictor.predict(texts))
        except Exception:  # find the poison one by one, below
            log.exception("the model failed on a batch of %d; predicting one by one", len(todo))
            predictions = [self._predict_one(v, text, broken) for v, text in zip(todo, texts, strict=True)]
        out.inference_s = time.perf_counter() - started
        now = self.clock()
        per_review_ms = 1000.0 * out.inference_s / len(todo)
        for v, pred in zip(todo, predictions, strict=True):
            if pred is None:
                continue
            try:
                v.record = self._record(v, pred, now, per_review_ms)
                v.payload = v.record.to_bytes()
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

    def _record(self, v: _Decoded, pred: Prediction, now: float, per_review_ms: float) -> EnrichedRecord:
        r = v.review
        return EnrichedRecord.model_construct(
            schema_version=1,
            review_id=r.review_id,
            product_id=r.product_id,
            true_rating=r.rating,
            category=r.category,
            timestamp=r.timestamp,
            sentiment=pred.sentiment,
            rating=pred.rating,
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
        )


def _internal_error(where: str, exc: BaseException, raw: bytes | None) -> DecodeFailure:
    return DecodeFailure(DecodeReason.INTERNAL_ERROR, f"{where} failed: {type(exc).__name__}: {exc}"[:300], raw)
