"""Scoring one split, the one way: the trainer (validation, test), the baseline and ``evaluate`` all call it.

Start here: :func:`score_split` takes a model's outputs on a split's reviews and aspect sentences (any
model: PyTorch, an ONNX runtime, the TF-IDF baseline) and returns the metrics dict of ``metrics.json``;
:func:`tune_split_thresholds` picks the per-aspect thresholds on validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS
from reviews_mtl.data.aspect_sources import TARGET_ASPECTS
from reviews_mtl.training.datasets import TaskRows
from reviews_mtl.training.metrics import (
    aspect_metrics,
    rating_metrics,
    sentiment_metrics,
    star_balanced_indices,
    tune_thresholds,
    validation_score,
)

FloatArray = npt.NDArray[np.floating[Any]]


@dataclass(frozen=True)
class SplitOutputs:
    """A model's outputs on one split: sentiment and rating on its reviews, aspects on its sentences."""

    review_sentiment: FloatArray  # (reviews, 3) probabilities
    review_rating: FloatArray  # (reviews,) stars
    sentence_aspects: FloatArray  # (sentences, 10) probabilities
    review_aspects: FloatArray | None = None  # (reviews, 10), scored against the weak labels when given
    review_stars: FloatArray | None = None  # (reviews, 5) star distribution, where the model gives one


def review_task_metrics(
    rows: TaskRows, sentiment: FloatArray, rating: FloatArray, star_probs: FloatArray | None = None
) -> dict[str, Any]:
    """Sentiment and rating metrics, on all reviews and on a star-balanced sample of them (the targets')."""
    stars = star_probs.argmax(1) + 1 if star_probs is not None else None
    result = {
        "sentiment": sentiment_metrics(rows.sentiment, sentiment.argmax(1), SENTIMENT_LABELS),
        "rating": rating_metrics(rows.stars.astype(np.float64), rating.astype(np.float64), stars),
    }
    balanced = star_balanced_indices(rows.stars)
    if len(balanced):
        result["star_balanced"] = {
            "n": len(balanced),
            "sentiment": sentiment_metrics(rows.sentiment[balanced], sentiment[balanced].argmax(1), SENTIMENT_LABELS),
            "rating": rating_metrics(
                rows.stars[balanced].astype(np.float64),
                rating[balanced].astype(np.float64),
                None if stars is None else stars[balanced],
            ),
        }
    return result


def tune_split_thresholds(outputs: SplitOutputs, reviews: TaskRows, sentences: TaskRows) -> dict[str, float]:
    """Per aspect, the F1-best threshold on the human-labelled sentences; aspects with no human label there
    are tuned on the reviews' weak labels when ``outputs`` carries review aspects."""
    human_mask = sentences.aspect_weight >= 1.0
    thresholds = tune_thresholds(outputs.sentence_aspects, sentences.aspects, human_mask, ASPECT_NAMES)
    if outputs.review_aspects is not None:
        weak_tuned = tune_thresholds(outputs.review_aspects, reviews.aspects, reviews.aspect_weight > 0, ASPECT_NAMES)
        for j, name in enumerate(ASPECT_NAMES):
            if not human_mask[:, j].any():
                thresholds[name] = weak_tuned[name]
    return thresholds


def score_split(
    outputs: SplitOutputs, reviews: TaskRows, sentences: TaskRows, thresholds: dict[str, float]
) -> dict[str, Any]:
    """The metrics of one split: per task, aspects on human-labelled cells, and the early-stopping score."""
    human_mask = sentences.aspect_weight >= 1.0
    probs = outputs.sentence_aspects
    metrics = review_task_metrics(reviews, outputs.review_sentiment, outputs.review_rating, outputs.review_stars)
    metrics["aspects"] = aspect_metrics(probs, sentences.aspects, human_mask, ASPECT_NAMES, thresholds)
    metrics["aspects_target"] = aspect_metrics(
        probs, sentences.aspects, human_mask, ASPECT_NAMES, thresholds, macro_over=TARGET_ASPECTS
    )
    if outputs.review_aspects is not None:
        metrics["aspects_weak_on_reviews"] = aspect_metrics(
            outputs.review_aspects, reviews.aspects, reviews.aspect_weight > 0, ASPECT_NAMES, thresholds
        )
    metrics["score"] = validation_score(
        metrics["sentiment"]["macro_f1"], metrics["rating"]["mae"], metrics["aspects"]["macro_f1"]
    )
    return metrics


def aspect_metrics_by_source(probs: FloatArray, sentences: TaskRows, thresholds: dict[str, float]) -> dict[str, Any]:
    """Aspect metrics of each source of the split's sentences (SemEval-16 vs ACOS: their annotators differ, so
    a split's mix of the two moves its figure)."""
    sources = sentences.sources if sentences.sources is not None else ["all"] * len(sentences)
    out: dict[str, Any] = {}
    for source in sorted(set(sources)):
        idx = np.array([i for i, s in enumerate(sources) if s == source], dtype=np.intp)
        mask = sentences.aspect_weight[idx] >= 1.0
        m = aspect_metrics(
            probs[idx], sentences.aspects[idx], mask, ASPECT_NAMES, thresholds, macro_over=TARGET_ASPECTS
        )
        out[source] = {"n": len(idx), "macro_f1_target6": m["macro_f1"],
                       "per_aspect": {k: {"f1": v["f1"], "support": v["support"]} for k, v in m["per_aspect"].items()}}
    return out
