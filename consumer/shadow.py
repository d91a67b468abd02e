"""Shadow a candidate model on live traffic: same batches, own topic, never the aggregates.

Start here: :class:`ShadowProcessor` wraps the live :class:`~consumer.processing.BatchProcessor`. After the live
batch is processed (and applied to Redis), the shadow model predicts the same reviews; each becomes a record shaped
like an enriched record (the shadow model's name, version and predictions, the live record's ids and source) in
``BatchOutput.shadow``, which ``KafkaOutput`` publishes to the shadow topic in the batch's own transaction, so the
shadow topic holds one record per committed live record. Agreement with the live model (sentiment label, |Δ rating|,
aspect Jaccard) and the shadow's cost go to ``ShadowMetrics``.

The live path waits for the shadow (its records join the live transaction), so a batch takes longer by the shadow's
time and by nothing else; without ``--shadow-model`` no wrapper exists at all. A shadow that fails costs one log line
and a metric: the live batch goes out without shadow records.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from consumer.metrics import ShadowMetrics
from consumer.processing import BatchOutput, BatchProcessor, InMessage, OutRecord, PartitionKey, Predictor
from reviews_mtl.aggregates.store import Violation
from reviews_mtl.contracts import Prediction, Review, decode_review, published_rating

log = logging.getLogger(__name__)


def aspect_jaccard(live: Sequence[str], shadow: Sequence[str]) -> float:
    """|A ∩ B| / |A ∪ B| of the detected aspects; 1 when neither model detects any."""
    a, b = set(live), set(shadow)
    union = a | b
    return len(a & b) / len(union) if union else 1.0


class BatchSampler:
    """Takes ``share`` of the batches, spread evenly and deterministically (share 0.25: every fourth)."""

    def __init__(self, share: float) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"the shadow share must be in (0, 1], got {share}")
        self.share = share
        self._credit = 1.0 - share  # the first batch is taken

    def take(self) -> bool:
        self._credit += self.share
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return True
        return False


class ShadowProcessor:
    """The live processor, then the shadow model on the reviews the live one enriched."""

    def __init__(
        self,
        live: BatchProcessor,
        shadow: Predictor,
        metrics: ShadowMetrics,
        share: float = 1.0,
        clock: Any = time.time,
    ) -> None:
        self.live = live
        self.shadow = shadow
        self.metrics = metrics
        self.sampler = BatchSampler(share)
        self.clock = clock
        metrics.info.labels(shadow.model_name, shadow.model_version, shadow.runtime).set(1)

    @property
    def predictor(self) -> Predictor:
        """The live model (what ``BatchProcessor.predictor`` says)."""
        return self.live.predictor

    def check(self, partitions: Sequence[PartitionKey], starts: Mapping[PartitionKey, int],
              topic_ids: Mapping[str, str]) -> list[Violation]:
        return self.live.check(partitions, starts, topic_ids)

    def process(self, messages: Sequence[InMessage], starts: Mapping[PartitionKey, int] | None = None,
                topic_ids: Mapping[str, str] | None = None) -> BatchOutput:
        out = self.live.process(messages, starts, topic_ids)
        if out.violations or not out.enriched or not self.sampler.take():
            return out
        started = time.perf_counter()
        try:
            out.shadow = self.shadow_records(messages, out.enriched)
        except Exception:  # the candidate must never break the live path
            self.metrics.errors.inc()
            log.exception("the shadow model failed on a batch of %d; the live batch goes on without it",
                          len(out.enriched))
            out.shadow = []
        finally:
            self.metrics.seconds.observe(time.perf_counter() - started)
        return out

    def shadow_records(self, messages: Sequence[InMessage], enriched: Sequence[OutRecord]) -> list[OutRecord]:
        """One shadow record per live record, in the same order and with the same key."""
        by_source: dict[tuple[Any, Any, Any], InMessage] = {(m.topic, m.partition, m.offset): m for m in messages}
        lives: list[tuple[OutRecord, dict[str, Any]]] = []
        texts: list[str] = []
        for rec in enriched:
            live: dict[str, Any] = json.loads(rec.value or b"{}")
            if not isinstance(live, dict):
                continue
            src = live.get("source") or {}
            msg = by_source.get((src.get("topic"), src.get("partition"), src.get("offset")))
            review = decode_review(msg.value) if msg is not None else None
            if not isinstance(review, Review) or "sentiment" not in live:
                continue  # a retraction's record (nothing to predict), or not from this batch
            lives.append((rec, live))
            texts.append(review.model_text())
        if not texts:
            return []
        predicted = time.perf_counter()
        predictions = self.shadow.predict(texts)
        per_review_ms = 1000.0 * (time.perf_counter() - predicted) / len(texts)
        now = self.clock()
        out: list[OutRecord] = []
        agreements = 0
        for (rec, live), pred in zip(lives, predictions, strict=True):
            agreements += live["sentiment"]["label"] == pred.sentiment.label
            self.metrics.rating_abs_delta.observe(abs(float(live["rating"]) - published_rating(pred.rating)))
            self.metrics.aspect_jaccard.observe(aspect_jaccard(live["aspects_detected"], pred.aspects_detected))
            out.append(OutRecord(rec.key, self._record(live, pred, now, per_review_ms)))
        self.metrics.reviews.inc(len(out))
        self.metrics.sentiment_agreements.inc(agreements)
        return out

    def _record(self, live: dict[str, Any], pred: Prediction, now: float, per_review_ms: float) -> bytes:
        """The live record with the shadow model's predictions and identity: it reads like an enriched record."""
        record = {
            **live,
            "sentiment": pred.sentiment.model_dump(),
            "rating": published_rating(pred.rating),
            "aspects": pred.aspects,
            "aspects_detected": pred.aspects_detected,
            "model_name": self.shadow.model_name,
            "model_version": self.shadow.model_version,
            "model_runtime": self.shadow.runtime,
            "processed_at": now,
            "processing_ms": per_review_ms,
        }
        return json.dumps(record, separators=(",", ":")).encode("utf-8")
