"""The model's quality measured live: sliding windows per model version, as Prometheus gauges.

Reviews that carry their own stars tell how right the model is now (rating MAE, 5-class accuracy, agreement of the
sentiment with the stars); every prediction tells how its mix drifts from the one the model card recorded on
validation (a population stability index). Redis keeps the same per day (``aggregates quality``); these gauges
are the worker's recent window. Nothing here feeds back into training.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

from consumer.metrics import WorkerMetrics
from reviews_mtl.aggregates.drift import psi, rate_psi
from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS
from reviews_mtl.model.artifact import PredictionReference


@dataclass(frozen=True, slots=True)
class Observed:
    """One prediction the worker counted: the review's own stars (when it has them) and what the model said."""

    true_rating: int | None
    rating: float
    sentiment: str
    aspects: tuple[str, ...]
    stars: int | None = None  # the predicted stars, where the model gives them (else the rating, rounded)

    @property
    def predicted_stars(self) -> int:
        return self.stars if self.stars is not None else max(1, min(5, int(self.rating + 0.5)))


def stars_sentiment(stars: int) -> str:
    """The sentiment a star rating stands for, as the trainer labels it (1–2 negative, 3 neutral, 4–5 positive)."""
    return "negative" if stars <= 2 else "neutral" if stars == 3 else "positive"


class LiveQuality:
    def __init__(self, metrics: WorkerMetrics, window: int, reference: PredictionReference | None) -> None:
        self.metrics = metrics
        self.window = window
        self.reference = reference
        self._rated: dict[str, deque[Observed]] = {}
        self._all: dict[str, deque[Observed]] = {}

    def observe(self, model_version: str, rows: Sequence[Observed]) -> None:
        if not rows:
            return
        rated = self._rated.setdefault(model_version, deque(maxlen=self.window))
        every = self._all.setdefault(model_version, deque(maxlen=self.window))
        every.extend(rows)
        rated.extend(r for r in rows if r.true_rating is not None)
        m = self.metrics
        if rated:
            n = len(rated)
            m.live_rating_mae.labels(model_version).set(
                sum(abs(r.rating - (r.true_rating or 0)) for r in rated) / n)
            m.live_star5_accuracy.labels(model_version).set(
                sum(r.predicted_stars == r.true_rating for r in rated) / n)
            m.live_sentiment_agreement.labels(model_version).set(
                sum(stars_sentiment(r.true_rating or 0) == r.sentiment for r in rated) / n)
        if self.reference is not None:
            n = len(every)
            labels = Counter(r.sentiment for r in every)
            m.prediction_drift_psi.labels(model_version, "sentiment").set(
                psi(self.reference.sentiment, {k: labels[k] / n for k in SENTIMENT_LABELS}))
            if self.reference.aspect_rates:
                detected = Counter(a for r in every for a in r.aspects)
                m.prediction_drift_psi.labels(model_version, "aspects").set(
                    rate_psi(self.reference.aspect_rates, {a: detected[a] / n for a in ASPECT_NAMES}))
