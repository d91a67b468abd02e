"""The live-quality gauges: sliding windows per model version, and prediction drift against validation."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from consumer.live_quality import LiveQuality, Observed
from consumer.metrics import WorkerMetrics
from reviews_mtl.aggregates.drift import psi, rate_psi
from reviews_mtl.model.artifact import PredictionReference


def test_psi_is_zero_for_equal_mixes_and_grows_with_the_shift() -> None:
    base = {"negative": 0.2, "neutral": 0.1, "positive": 0.7}
    assert psi(base, base) == 0.0
    small = psi(base, {"negative": 0.25, "neutral": 0.1, "positive": 0.65})
    large = psi(base, {"negative": 0.6, "neutral": 0.1, "positive": 0.3})
    assert 0 < small < 0.1 < 0.25 < large
    assert math.isfinite(psi(base, {"negative": 1.0}))  # absent categories: large but finite
    assert rate_psi({"price": 0.1}, {"price": 0.1}) == 0.0 < rate_psi({"price": 0.1}, {"price": 0.5})


def test_windows_per_model_version_give_mae_accuracy_agreement_and_drift() -> None:
    registry = CollectorRegistry()
    reference = PredictionReference({"negative": 0.5, "neutral": 0.0, "positive": 0.5}, {"price": 0.5})
    live = LiveQuality(WorkerMetrics.create(registry), window=4, reference=reference)
    live.observe("v1", [Observed(5, 4.6, "positive", ("price",)), Observed(1, 2.0, "negative", ()),
                        Observed(None, 3.0, "neutral", ())])

    def gauge(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"reviews_mtl_{name}", {"model_version": "v1", **labels})

    assert gauge("live_rating_mae") == pytest.approx((0.4 + 1.0) / 2)
    assert gauge("live_star5_accuracy") == 0.5  # 4.6 rounds to 5; 2.0 is not 1
    assert gauge("live_sentiment_agreement") == 1.0
    assert gauge("prediction_drift_psi", what="sentiment") == pytest.approx(
        psi(reference.sentiment, {"negative": 1 / 3, "neutral": 1 / 3, "positive": 1 / 3}))
    # The window slides: four newer reviews with stars push the old ones out.
    live.observe("v1", [Observed(3, 3.0, "neutral", ())] * 4)
    assert gauge("live_rating_mae") == 0.0 and gauge("live_star5_accuracy") == 1.0
    live.observe("v2", [Observed(2, 5.0, "positive", ())])
    assert registry.get_sample_value("reviews_mtl_live_rating_mae", {"model_version": "v2"}) == 3.0


def test_predicted_stars_count_where_the_model_gives_them() -> None:
    registry = CollectorRegistry()
    live = LiveQuality(WorkerMetrics.create(registry), window=10, reference=None)
    # A star head said 4 although the expected rating (3.6) rounds to 4 too; and 5 where 4.4 would round to 4.
    live.observe("v", [Observed(4, 3.6, "positive", (), stars=4), Observed(5, 4.4, "positive", (), stars=5)])
    assert registry.get_sample_value("reviews_mtl_live_star5_accuracy", {"model_version": "v"}) == 1.0
