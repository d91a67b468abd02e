"""The enriched record's bytes, serialized once, straight from the review and its prediction.

The same bytes as ``EnrichedRecord(...).to_bytes()`` (pydantic's ``model_dump_json(exclude_none=True)``: fields
in the model's order, ``None`` left out, the same float and string encoding; a test holds the two equal), without
building the pydantic object first: on a GPU worker that object and its serialization cost more than the model.
Anything orjson refuses (a lone surrogate in a category, say) is built the reference way, which raises its own
error as before.
"""

from __future__ import annotations

from typing import Any

import orjson

from reviews_mtl.contracts import SCHEMA_VERSION, EnrichedRecord, Prediction, Review, SourceCoordinates


def enriched_document(review: Review, pred: Prediction, *, model_name: str, model_version: str,
                      model_runtime: str | None, processed_at: float, processing_ms: float,
                      topic: str, partition: int, offset: int) -> dict[str, Any]:
    """The enriched record as a JSON document, in ``EnrichedRecord``'s field order, ``None`` left out."""
    s = pred.sentiment
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "review_id": review.review_id,
        "product_id": review.product_id,
        "sentiment": {"label": s.label, "confidence": s.confidence, "probabilities": s.probabilities},
        "rating": pred.rating,
        "aspects": pred.aspects,
        "aspects_detected": pred.aspects_detected,
    }
    if review.rating is not None:
        doc["true_rating"] = review.rating
    if review.category is not None:
        doc["category"] = review.category
    if review.timestamp is not None:
        doc["timestamp"] = review.timestamp
    doc["model_name"] = model_name
    doc["model_version"] = model_version
    if model_runtime is not None:
        doc["model_runtime"] = model_runtime
    doc["processed_at"] = processed_at
    doc["processing_ms"] = processing_ms
    doc["source"] = {"topic": topic, "partition": partition, "offset": offset}
    if review.version is not None:
        doc["version"] = review.version
    return doc


def reference_record(review: Review, pred: Prediction, *, model_name: str, model_version: str,
                     model_runtime: str | None, processed_at: float, processing_ms: float,
                     topic: str, partition: int, offset: int) -> EnrichedRecord:
    """The pydantic record of the contract (what :func:`enriched_bytes` must serialize to)."""
    return EnrichedRecord.model_construct(
        schema_version=SCHEMA_VERSION, review_id=review.review_id, product_id=review.product_id,
        true_rating=review.rating, category=review.category, timestamp=review.timestamp,
        sentiment=pred.sentiment, rating=pred.rating, aspects=pred.aspects, aspects_detected=pred.aspects_detected,
        model_name=model_name, model_version=model_version, model_runtime=model_runtime,
        processed_at=processed_at, processing_ms=processing_ms,
        source=SourceCoordinates.model_construct(topic=topic, partition=partition, offset=offset),
        version=review.version,
    )


def enriched_bytes(review: Review, pred: Prediction, *, model_name: str, model_version: str,
                   model_runtime: str | None, processed_at: float, processing_ms: float,
                   topic: str, partition: int, offset: int) -> bytes:
    """``EnrichedRecord(...).to_bytes()`` of this review and prediction, serialized once by orjson."""
    kwargs: dict[str, Any] = {"model_name": model_name, "model_version": model_version,
                              "model_runtime": model_runtime, "processed_at": processed_at,
                              "processing_ms": processing_ms, "topic": topic, "partition": partition,
                              "offset": offset}
    try:
        return orjson.dumps(enriched_document(review, pred, **kwargs))
    except TypeError:  # a value orjson refuses: the reference path decides (and words the error)
        return reference_record(review, pred, **kwargs).to_bytes()
