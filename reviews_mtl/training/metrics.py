"""Metrics of the three tasks, shared by the trainer (validation), ``evaluate`` and the baseline.

All functions take numpy arrays; aspect functions take a ``mask`` of the cells that carry a label, so a
metric is computed only on labelled cells. Per-aspect thresholds are tuned here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.integer[Any]]

THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.025), 3)


def sentiment_from_stars(stars: IntArray) -> IntArray:
    """1–2 → 0 (negative), 3 → 1 (neutral), 4–5 → 2 (positive)."""
    return np.where(stars <= 2, 0, np.where(stars == 3, 1, 2))


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def sentiment_metrics(y_true: IntArray, y_pred: IntArray, labels: Sequence[str]) -> dict[str, Any]:
    k = len(labels)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class = {}
    for i, name in enumerate(labels):
        tp = confusion[i, i]
        p, r, f = _prf(tp, confusion[:, i].sum() - tp, confusion[i, :].sum() - tp)
        per_class[name] = {"precision": p, "recall": r, "f1": f, "support": int(confusion[i, :].sum())}
    n = max(1, len(y_true))
    return {
        "n": len(y_true),
        "accuracy": float(np.trace(confusion) / n),
        "macro_precision": float(np.mean([c["precision"] for c in per_class.values()])),
        "macro_recall": float(np.mean([c["recall"] for c in per_class.values()])),
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "labels": list(labels),
    }


def rating_metrics(y_true: FloatArray, y_pred: FloatArray, stars: IntArray | None = None) -> dict[str, float]:
    """MAE, RMSE, R² of the float rating; 5-class accuracy of ``stars`` (the most likely star, where the model
    gives a star distribution) or else of the rounded rating (``rounded_accuracy`` is always the latter)."""
    err = y_pred - y_true
    var = float(np.var(y_true)) if len(y_true) else 0.0
    rounded = np.clip(np.rint(y_pred), 1, 5)
    picked = rounded if stars is None else np.asarray(stars)
    return {
        "n": len(y_true),
        "mae": float(np.mean(np.abs(err))) if len(err) else 0.0,
        "rmse": float(np.sqrt(np.mean(err**2))) if len(err) else 0.0,
        "r2": float(1 - np.mean(err**2) / var) if var > 0 else 0.0,
        "rounded_mae": float(np.mean(np.abs(rounded - y_true))) if len(err) else 0.0,
        "rounded_accuracy": float(np.mean(rounded == y_true)) if len(err) else 0.0,
        "accuracy_5class": float(np.mean(picked == y_true)) if len(err) else 0.0,
        "stars_mae": float(np.mean(np.abs(picked - y_true))) if len(err) else 0.0,
    }


def binary_f1(y_true: IntArray, y_pred: IntArray) -> tuple[float, float, float]:
    tp = float(np.sum((y_true == 1) & (y_pred == 1)))
    fp = float(np.sum((y_true == 0) & (y_pred == 1)))
    fn = float(np.sum((y_true == 1) & (y_pred == 0)))
    return _prf(tp, fp, fn)


def tune_thresholds(
    probs: FloatArray, targets: FloatArray, mask: npt.NDArray[np.bool_], names: Sequence[str], default: float = 0.5
) -> dict[str, float]:
    """Per aspect, the threshold on a fixed grid that maximizes F1 on the labelled cells."""
    thresholds: dict[str, float] = {}
    for j, name in enumerate(names):
        rows = mask[:, j]
        y = targets[rows, j].astype(int)
        if rows.sum() == 0 or y.sum() == 0:
            thresholds[name] = default
            continue
        p = probs[rows, j]
        scores = [binary_f1(y, (p >= t).astype(int))[2] for t in THRESHOLD_GRID]
        thresholds[name] = float(THRESHOLD_GRID[int(np.argmax(scores))])
    return thresholds


def aspect_metrics(
    probs: FloatArray,
    targets: FloatArray,
    mask: npt.NDArray[np.bool_],
    names: Sequence[str],
    thresholds: dict[str, float],
    macro_over: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per-aspect P/R/F1 on labelled cells; macro over ``macro_over`` (default: aspects with positives)."""
    per: dict[str, dict[str, float]] = {}
    tp_all = fp_all = fn_all = 0.0
    wrong = cells = 0
    for j, name in enumerate(names):
        rows = mask[:, j]
        if rows.sum() == 0:
            continue
        y = targets[rows, j].astype(int)
        pred = (probs[rows, j] >= thresholds.get(name, 0.5)).astype(int)
        tp = float(np.sum((y == 1) & (pred == 1)))
        fp = float(np.sum((y == 0) & (pred == 1)))
        fn = float(np.sum((y == 1) & (pred == 0)))
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        wrong += int(np.sum(y != pred))
        cells += len(y)
        p, r, f = _prf(tp, fp, fn)
        per[name] = {"precision": p, "recall": r, "f1": f, "support": int(y.sum()), "n": len(y)}
    chosen = [n for n in (macro_over or [n for n, v in per.items() if v["support"] > 0]) if n in per]
    _, _, micro = _prf(tp_all, fp_all, fn_all)
    return {
        "macro_f1": float(np.mean([per[n]["f1"] for n in chosen])) if chosen else 0.0,
        "macro_over": chosen,
        "micro_f1": micro,
        "hamming_loss": wrong / cells if cells else 0.0,
        "per_aspect": per,
    }


def validation_score(sentiment_macro_f1: float, rating_mae: float, aspect_macro_f1: float) -> float:
    """One number over the three tasks for early stopping: mean of sentiment F1, 1 - MAE/2, aspect F1."""
    return float((sentiment_macro_f1 + max(0.0, 1.0 - rating_mae / 2.0) + aspect_macro_f1) / 3.0)


def star_balanced_indices(stars: IntArray, seed: int = 0) -> IntArray:
    """Indices of a sample with the same number of rows for every star (the rarest star's count)."""
    rng = np.random.default_rng(seed)
    present = [s for s in range(1, 6) if np.any(stars == s)]
    if not present:
        return np.array([], dtype=int)
    n = min(int(np.sum(stars == s)) for s in present)
    picks = [rng.choice(np.flatnonzero(stars == s), n, replace=False) for s in present]
    return np.sort(np.concatenate(picks))
