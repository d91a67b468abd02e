"""The enriched record serialized once (consumer.records) is byte for byte the contract's EnrichedRecord JSON."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consumer.records import enriched_bytes, reference_record
from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS, Prediction, Review, SentimentResult

FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.floats(0, 1).map(lambda x: round(x, 6))
TEXT = st.text(min_size=1, max_size=20).filter(lambda t: t.strip() != "")


@st.composite
def review_and_prediction(draw: st.DrawFn) -> tuple[Review, Prediction]:
    review = Review.model_construct(
        review_id=draw(TEXT), product_id=draw(TEXT), text="t", rating=draw(st.none() | st.integers(1, 5)),
        category=draw(st.none() | st.text(max_size=10)), timestamp=draw(st.none() | FLOATS),
        version=draw(st.none() | st.integers(0, 2**40)), schema_version=1, title=None, verified=None, user_id=None)
    probs = draw(st.lists(FLOATS, min_size=3, max_size=3))
    aspects = draw(st.lists(FLOATS, min_size=len(ASPECT_NAMES), max_size=len(ASPECT_NAMES)))
    sentiment = SentimentResult.model_construct(label=draw(st.sampled_from(SENTIMENT_LABELS)), confidence=max(probs),
                                                probabilities=dict(zip(SENTIMENT_LABELS, probs, strict=True)))
    pred = Prediction.model_construct(
        sentiment=sentiment,
        rating=draw(FLOATS), aspects=dict(zip(ASPECT_NAMES, aspects, strict=True)),
        aspects_detected=draw(st.lists(st.sampled_from(ASPECT_NAMES), unique=True)))
    return review, pred


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(review_and_prediction(), st.none() | st.text(max_size=12), FLOATS, FLOATS, st.integers(0, 2**40))
@example((Review.model_construct(review_id="r\u2028\"\\", product_id="p\x7f", text="t", rating=None,
                                 category="c\u00e9\U0001f600", timestamp=1.7e9, version=None, schema_version=1),
          Prediction.model_construct(sentiment=SentimentResult.model_construct(
              label="neutral", confidence=1e-05, probabilities={"negative": 1e-05, "neutral": 0.5, "positive": 0.1}),
              rating=4.0, aspects={}, aspects_detected=[])), "onnx-int8", 1e16, 0.0, 0)
def test_enriched_bytes_equal_the_contracts_json(pair: tuple[Review, Prediction], runtime: str | None,
                                                 processed_at: float, ms: float, offset: int) -> None:
    review, pred = pair
    kwargs: dict[str, Any] = {"model_name": "m", "model_version": "v1", "model_runtime": runtime,
                              "processed_at": processed_at, "processing_ms": ms, "topic": "in", "partition": 3,
                              "offset": offset}
    assert enriched_bytes(review, pred, **kwargs) == reference_record(review, pred, **kwargs).to_bytes()


def test_a_value_orjson_refuses_is_serialized_the_reference_way() -> None:
    review = Review.model_construct(review_id="r", product_id="p", text="t", rating=None, category="\ud800",
                                    timestamp=None, version=None, schema_version=1)
    pred = Prediction.model_construct(
        sentiment=SentimentResult.model_construct(label="positive", confidence=0.9,
                                                  probabilities={"negative": 0.05, "neutral": 0.05, "positive": 0.9}),
        rating=4.0, aspects={}, aspects_detected=[])
    kwargs: dict[str, Any] = {"model_name": "m", "model_version": "v", "model_runtime": None, "processed_at": 1.0,
                              "processing_ms": 1.0, "topic": "t", "partition": 0, "offset": 0}
    errors: list[str] = []
    for fast in (True, False):
        try:
            if fast:
                enriched_bytes(review, pred, **kwargs)
            else:
                reference_record(review, pred, **kwargs).to_bytes()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    assert len(errors) == 2 and errors[0] == errors[1]
