"""The enriched record serialized once (consumer.records) is byte for byte the contract's EnrichedRecord JSON."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consumer.records import record_bytes
from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS, EnrichedRecord, SentimentResult, SourceCoordinates

FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.floats(0, 1).map(lambda x: round(x, 6))
TEXT = st.text(min_size=1, max_size=20)


@st.composite
def records(draw: st.DrawFn) -> EnrichedRecord:
    probs = draw(st.lists(FLOATS, min_size=3, max_size=3))
    aspects = draw(st.lists(FLOATS, min_size=len(ASPECT_NAMES), max_size=len(ASPECT_NAMES)))
    sentiment = SentimentResult.model_construct(label=draw(st.sampled_from(SENTIMENT_LABELS)), confidence=max(probs),
                                                probabilities=dict(zip(SENTIMENT_LABELS, probs, strict=True)))
    return EnrichedRecord.model_construct(
        schema_version=1, review_id=draw(TEXT), product_id=draw(TEXT), sentiment=sentiment, rating=draw(FLOATS),
        stars=draw(st.none() | st.integers(1, 5)), aspects=dict(zip(ASPECT_NAMES, aspects, strict=True)),
        aspects_detected=draw(st.lists(st.sampled_from(ASPECT_NAMES), unique=True)),
        true_rating=draw(st.none() | st.integers(1, 5)), category=draw(st.none() | st.text(max_size=10)),
        timestamp=draw(st.none() | FLOATS), model_name=draw(TEXT), model_version=draw(TEXT),
        model_runtime=draw(st.none() | TEXT), processed_at=draw(FLOATS), processing_ms=draw(FLOATS),
        source=SourceCoordinates.model_construct(topic=draw(TEXT), partition=draw(st.integers(0, 1000)),
                                                 offset=draw(st.integers(0, 2**62))),
        version=draw(st.none() | st.integers(0, 2**40)))


_EDGE = EnrichedRecord.model_construct(
    schema_version=1, review_id="r\u2028\"\\", product_id="p\x7f", rating=4.0, stars=None, aspects={},
    sentiment=SentimentResult.model_construct(label="neutral", confidence=1e-05,
                                              probabilities={"negative": 1e-05, "neutral": 0.5, "positive": 0.1}),
    aspects_detected=[], true_rating=None, category="c\u00e9\U0001f600", timestamp=1.7e9, model_name="m",
    model_version="v", model_runtime=None, processed_at=1e16, processing_ms=0.0,
    source=SourceCoordinates.model_construct(topic="t", partition=0, offset=0), version=None)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(records())
@example(_EDGE)
def test_record_bytes_equal_the_contracts_json(record: EnrichedRecord) -> None:
    assert record_bytes(record) == record.to_bytes()


def test_a_value_orjson_refuses_is_serialized_the_reference_way() -> None:
    record = _EDGE.model_copy(update={"category": "\ud800"})
    errors: list[str] = []
    for fast in (True, False):
        try:
            if fast:
                record_bytes(record)
            else:
                record.to_bytes()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    assert len(errors) == 2 and errors[0] == errors[1]
