"""Calibrations tuned on validation and served with the model: where sentiment comes from, and the biases
that move its decision and the star distribution toward the targets' star-balanced evaluation.

Start here: :class:`RawOutputs` holds a model's uncalibrated outputs on a split; :func:`served_outputs`
applies a :class:`~reviews_mtl.model.modeling.HeadConfig`'s calibrations exactly as the served graph does
(it calls :func:`reviews_mtl.model.modeling.serve`); :func:`tune_calibration` picks them on validation.

- **Star bias** (heads with a star distribution): ``-τ · log(training star prior)`` added to the star
  log-probabilities, τ on a grid. Training reviews are half 5★; a star-balanced test set is not. τ = 1 is
  the Bayes correction for that shift, τ = 0 none; τ maximizes star-balanced (5-class accuracy − MAE).
- **Sentiment source and band**: the sentiment head, or the star distribution grouped 1–2 / 3 / 4–5; a bias
  on the neutral (and the negative) log-probability widens or narrows the neutral band. Both are chosen for
  star-balanced sentiment macro-F1, and each candidate's figure is kept (``candidates``) so the report can
  show head-vs-derived side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from reviews_mtl.contracts import SENTIMENT_LABELS
from reviews_mtl.model.modeling import N_STARS, HeadConfig, serve
from reviews_mtl.training.datasets import TaskRows
from reviews_mtl.training.metrics import rating_metrics, sentiment_metrics, star_balanced_indices

FloatArray = npt.NDArray[np.float32]

STAR_BIAS_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
NEUTRAL_BIAS_GRID = np.round(np.arange(-1.0, 3.01, 0.25), 2)
NEGATIVE_BIAS_GRID = np.round(np.arange(-1.0, 1.51, 0.25), 2)


@dataclass
class RawOutputs:
    """A model's uncalibrated outputs on one split (probabilities, not logits)."""

    sentiment: FloatArray  # (reviews, 3) from the sentiment head
    rating: FloatArray  # (reviews,) the head's rating (expectation, for distribution heads)
    review_aspects: FloatArray  # (reviews, 10)
    sentence_aspects: FloatArray  # (sentences, 10)
    stars: FloatArray | None = None  # (reviews, 5) star distribution


@dataclass
class ServedSplit:
    sentiment: FloatArray  # (reviews, 3)
    rating: FloatArray  # (reviews,)
    stars: FloatArray | None  # (reviews, 5)


def served_outputs(raw: RawOutputs, heads: HeadConfig) -> ServedSplit:
    """The served sentiment, rating and star distribution for ``raw`` under ``heads``' calibrations."""
    logits = torch.log(torch.from_numpy(raw.sentiment).clamp(min=1e-12))
    stars = None if raw.stars is None else torch.from_numpy(raw.stars)
    aspects = torch.zeros(len(raw.rating), 1)
    out = serve(logits, torch.from_numpy(raw.rating), aspects, stars, heads)
    return ServedSplit(
        out.sentiment_probs.numpy().astype(np.float32),
        out.rating.numpy().astype(np.float32),
        None if out.star_probs is None else out.star_probs.numpy().astype(np.float32),
    )


def star_prior(rows: TaskRows) -> FloatArray:
    counts = np.bincount(rows.stars[rows.stars > 0], minlength=N_STARS + 1)[1:].astype(np.float64) + 1.0
    prior: FloatArray = (counts / counts.sum()).astype(np.float32)
    return prior


def _rating_objective(rows: TaskRows, balanced: npt.NDArray[np.integer[Any]], served: ServedSplit) -> float:
    stars = None if served.stars is None else served.stars[balanced].argmax(1) + 1
    m = rating_metrics(rows.stars[balanced].astype(np.float64), served.rating[balanced].astype(np.float64), stars)
    return m["accuracy_5class"] - m["mae"]


def _sentiment_f1(rows: TaskRows, index: npt.NDArray[np.integer[Any]], probs: FloatArray) -> float:
    return float(sentiment_metrics(rows.sentiment[index], probs[index].argmax(1), SENTIMENT_LABELS)["macro_f1"])


def tune_calibration(
    raw: RawOutputs, rows: TaskRows, heads: HeadConfig, prior: FloatArray
) -> tuple[HeadConfig, dict[str, Any]]:
    """The calibrated head config for validation ``rows`` and a record of what each candidate scored."""
    balanced = star_balanced_indices(rows.stars)
    if len(balanced) == 0:
        return heads, {}
    record: dict[str, Any] = {"balanced_n": len(balanced)}
    best = replace(heads, sentiment_bias=None, star_bias=None, sentiment_source="head")
    if raw.stars is not None:
        scores = {}
        for tau in STAR_BIAS_GRID:
            candidate = replace(best, star_bias=tuple(float(-tau * np.log(p)) for p in prior))
            scores[tau] = _rating_objective(rows, balanced, served_outputs(raw, candidate))
        tau = max(scores, key=lambda t: (scores[t], -t))
        best = replace(best, star_bias=tuple(float(-tau * np.log(p)) for p in prior))
        record["star_bias_tau"] = tau
        record["star_bias_scores"] = {str(k): round(v, 4) for k, v in scores.items()}
    sources = ["head", "stars"] if raw.stars is not None else ["head"]
    candidates: dict[str, Any] = {}
    chosen: tuple[float, HeadConfig] | None = None
    for source in sources:
        base = served_outputs(raw, replace(best, sentiment_source=source, sentiment_bias=None))
        log_p = np.log(np.clip(base.sentiment, 1e-12, None))
        plain = _sentiment_f1(rows, balanced, base.sentiment)
        top = (plain, 0.0, 0.0)
        for b_neu in NEUTRAL_BIAS_GRID:
            for b_neg in NEGATIVE_BIAS_GRID:
                shifted = log_p + np.array([b_neg, b_neu, 0.0], dtype=np.float32)
                f1 = _sentiment_f1(rows, balanced, shifted.astype(np.float32))
                if f1 > top[0] + 1e-9:
                    top = (f1, float(b_neg), float(b_neu))
        candidates[source] = {
            "balanced_macro_f1_plain": round(plain, 4),
            "balanced_macro_f1_tuned": round(top[0], 4),
            "negative_bias": top[1],
            "neutral_bias": top[2],
        }
        config = replace(best, sentiment_source=source, sentiment_bias=(top[1], top[2], 0.0))
        if chosen is None or top[0] > chosen[0] + 1e-9:
            chosen = (top[0], config)
    assert chosen is not None
    record["sentiment_candidates"] = candidates
    record["sentiment_source"] = chosen[1].sentiment_source
    return chosen[1], record
