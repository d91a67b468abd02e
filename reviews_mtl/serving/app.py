"""The predict endpoint: FastAPI over a :class:`~reviews_mtl.serving.batcher.RequestBatcher`.

Endpoints (OpenAPI at ``/openapi.json``, docs at ``/docs``):

- ``POST /predict``  one review object (the input contract, :class:`~reviews_mtl.contracts.Review`) → one
  prediction; a list of them → a list, in order. 422: the contract's reason per bad item
  (``{"detail": [{"index", "reason", "message"}]}``); 413: body over ``max_body_bytes`` or more than
  ``max_items`` reviews; 429: the model's queue is full (``Retry-After``); 503: shutting down, or no model
  call within ``timeout_s``; 500: the model call failed.
- ``GET /healthz``   200 with the model's name, version and runtime, and the queue depth.

The body is read and validated here, not by FastAPI, so bad input gets the same reasons as the worker's
dead letters (``validate_review_object``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from reviews_mtl.contracts import (
    DecodeFailure,
    DecodeReason,
    Prediction,
    Review,
    SentimentResult,
    validate_review_object,
)
from reviews_mtl.model import Predictor
from reviews_mtl.serving.batcher import BatcherClosed, PredictionFailed, QueueFull, RequestBatcher
from reviews_mtl.serving.settings import ServeSettings

logger = logging.getLogger(__name__)


class PredictedReview(BaseModel):
    review_id: str
    product_id: str
    sentiment: SentimentResult
    rating: float
    aspects: dict[str, float]
    aspects_detected: list[str]
    model_name: str
    model_version: str
    runtime: str


class InvalidItem(BaseModel):
    index: int
    reason: str
    message: str


class InvalidRequest(BaseModel):
    detail: list[InvalidItem]


class ErrorDetail(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
    model_name: str
    model_version: str
    runtime: str
    queued: int
    model_calls: int
    predicted: int


class _Refused(Exception):
    def __init__(self, status: int, content: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.content = content
        self.headers = headers


def _request_body_schema(max_items: int) -> dict[str, Any]:
    review = Review.model_json_schema()
    schema = {"oneOf": [review, {"type": "array", "items": review, "minItems": 1, "maxItems": max_items}]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = _Refused(413, {"detail": f"request body over {limit} bytes"})
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _invalid(index: int, reason: DecodeReason, message: str) -> _Refused:
    return _Refused(422, {"detail": [{"index": index, "reason": reason.value, "message": message}]})


def parse_reviews(body: bytes, max_items: int) -> tuple[list[Review], bool]:
    """The reviews of a request body and whether it was one object (not a list); raises :class:`_Refused`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(0, DecodeReason.INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}") from exc
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _invalid(0, DecodeReason.INVALID_JSON, f"invalid JSON: {exc}"[:300]) from exc
    single = not isinstance(obj, list)
    items: list[Any] = [obj] if single else obj
    if not items:
        raise _invalid(0, DecodeReason.EMPTY_VALUE, "an empty list: send one review or a list of them")
    if len(items) > max_items:
        raise _Refused(413, {"detail": f"{len(items)} reviews in one request; at most {max_items}"})
    reviews: list[Review] = []
    failures: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        result = validate_review_object(item)
        if isinstance(result, DecodeFailure):
            failures.append({"index": i, "reason": result.reason.value, "message": result.detail})
        else:
            reviews.append(result)
    if failures:
        raise _Refused(422, {"detail": failures})
    return reviews, single


def _record(review: Review, prediction: Prediction, predictor: Predictor, runtime: str) -> dict[str, Any]:
    return {"review_id": review.review_id, "product_id": review.product_id, **prediction.model_dump(mode="json"),
            "model_name": predictor.model_name, "model_version": predictor.model_version, "runtime": runtime}


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> FastAPI:
    """An app that serves ``predictor`` (already loaded and warmed) within ``settings``' bounds."""
    from reviews_mtl import __version__ as version

    limits = settings or ServeSettings()
    batcher = RequestBatcher(predictor.predict, max_batch=limits.max_batch, max_wait_s=limits.max_wait_ms / 1000,
                             max_queued=limits.max_queued)
    runtime = str(getattr(predictor, "runtime", "unknown"))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.close()

    app = FastAPI(
        title="reviews-mtl predict",
        version=str(version),
        description=f"Sentiment, star rating and aspects of reviews from {predictor.model_name} "
        f"{predictor.model_version}; concurrent requests are micro-batched.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher

    @app.exception_handler(_Refused)
    def refused(_request: Request, exc: _Refused) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.content, headers=exc.headers)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        return Health(status="ok", model_name=predictor.model_name, model_version=predictor.model_version,
                      runtime=runtime, queued=batcher.queued, model_calls=batcher.model_calls,
                      predicted=batcher.predicted)

    @app.post(
        "/predict",
        response_model=PredictedReview | list[PredictedReview],
        responses={413: {"model": ErrorDetail}, 422: {"model": InvalidRequest}, 429: {"model": ErrorDetail},
                   500: {"model": ErrorDetail}, 503: {"model": ErrorDetail}},
        openapi_extra=_request_body_schema(limits.max_items),
    )
    async def predict(request: Request) -> JSONResponse:
        reviews, single = parse_reviews(await _read_body(request, limits.max_body_bytes), limits.max_items)
        try:
            predictions = await asyncio.wait_for(batcher.predict([r.model_text() for r in reviews]),
                                                 limits.timeout_s)
        except QueueFull as exc:
            raise _Refused(429, {"detail": str(exc)}, {"Retry-After": "1"}) from exc
        except BatcherClosed as exc:
            raise _Refused(503, {"detail": str(exc)}) from exc
        except asyncio.TimeoutError as exc:
            raise _Refused(503, {"detail": f"no model call within {limits.timeout_s:g}s"}) from exc
        except PredictionFailed as exc:
            raise _Refused(500, {"detail": f"prediction failed: {exc}"}) from exc
        records = [_record(r, p, predictor, runtime) for r, p in zip(reviews, predictions, strict=True)]
        return JSONResponse(records[0] if single else records)

    return app
