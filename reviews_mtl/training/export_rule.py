"""The int8 export rule: which projections stay fp32 is chosen per model by what users see.

Start here: :func:`choose_int8` scores ``model.onnx`` (fp32) and each candidate of
:func:`reviews_mtl.training.quantize.variants` (most quantized first) on the validation split with the
artifact's own thresholds, and writes the first candidate that meets :class:`Int8Rule` as
``model.int8.onnx``. A candidate may lose at most 0.005 sentiment macro-F1, 0.01 rating MAE and 0.01 aspect
macro-F1 against fp32 (over all validation rows). Every scored candidate's
metrics and speed (validation rows per second, measured in the same run as fp32) go into ``metrics.json``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reviews_mtl.model.artifact import ONNX_FP32_FILE, ONNX_INT8_FILE
from reviews_mtl.model.runtime import OnnxPredictor
from reviews_mtl.training.datasets import TaskRows
from reviews_mtl.training.quantize import Variant, encoder_layers, variants, write_variant
from reviews_mtl.training.scoring import SplitOutputs, score_split

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Int8Rule:
    max_sentiment_f1_drop: float = 0.005
    max_mae_increase: float = 0.01
    max_aspect_f1_drop: float = 0.01

    def losses(self, fp32: dict[str, float], int8: dict[str, float]) -> dict[str, float]:
        return {
            "sentiment_f1_drop": fp32["sentiment_macro_f1"] - int8["sentiment_macro_f1"],
            "mae_increase": int8["rating_mae"] - fp32["rating_mae"],
            "aspect_f1_drop": fp32["aspect_macro_f1"] - int8["aspect_macro_f1"],
        }

    def holds(self, fp32: dict[str, float], int8: dict[str, float]) -> bool:
        loss = self.losses(fp32, int8)
        eps = 1e-9
        return (
            loss["sentiment_f1_drop"] <= self.max_sentiment_f1_drop + eps
            and loss["mae_increase"] <= self.max_mae_increase + eps
            and loss["aspect_f1_drop"] <= self.max_aspect_f1_drop + eps
        )


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The three figures the rule compares, over every validation row: int8 against fp32 is a paired comparison,
    and the star-balanced subsample (a fifth of the rows on the demo's 400) made one flipped review a 0.005 move."""
    return {
        "sentiment_macro_f1": float(metrics["sentiment"]["macro_f1"]),
        "rating_mae": float(metrics["rating"]["mae"]),
        "aspect_macro_f1": float(metrics["aspects"]["macro_f1"]),
    }


def score_graph(
    model_dir: Path,
    onnx_file: Path,
    reviews: TaskRows,
    sentences: TaskRows,
    thresholds: dict[str, float],
    bucket: int = 0,
) -> dict[str, Any]:
    """One graph's validation metrics (through the CPU runtime the worker uses) and its speed."""
    predictor = OnnxPredictor(model_dir, onnx_file=onnx_file, bucket=bucket)
    texts = [*reviews.texts, *sentences.texts]
    predictor.predict_arrays(texts[:64])  # warm-up
    started = time.perf_counter()
    out = predictor.predict_arrays(texts)
    seconds = time.perf_counter() - started
    n = len(reviews)
    outputs = SplitOutputs(
        out.sentiment_probs[:n],
        out.rating[:n],
        out.aspect_probs[n:],
        review_stars=None if out.star_probs is None else out.star_probs[:n],
    )
    metrics = score_split(outputs, reviews, sentences, thresholds)
    return {**headline(metrics), "rows_per_s": round(len(texts) / max(seconds, 1e-9), 1), "seconds": round(seconds, 2)}


def choose_int8(
    model_dir: Path,
    reviews: TaskRows,
    sentences: TaskRows,
    thresholds: dict[str, float],
    rule: Int8Rule,
    candidates: Sequence[Variant] | None = None,
    try_all: bool = False,
) -> dict[str, Any]:
    """Write ``model.int8.onnx`` as the first candidate that meets ``rule``; return the record of the choice.

    ``try_all`` scores every candidate (the report); otherwise scoring stops at the first that holds.
    """
    model_dir = Path(model_dir)
    source = model_dir / ONNX_FP32_FILE
    fp32 = score_graph(model_dir, source, reviews, sentences, thresholds)
    scored: list[dict[str, Any]] = []
    chosen: Variant | None = None
    work = model_dir / "int8-candidate.onnx"
    for variant in candidates if candidates is not None else variants(encoder_layers(source)):
        if chosen is not None and not try_all:
            break
        write_variant(source, work, variant)
        figures = score_graph(model_dir, work, reviews, sentences, thresholds)
        holds = rule.holds(fp32, figures)
        scored.append({**variant.to_dict(), **figures, **rule.losses(fp32, figures), "meets_rule": holds,
                       "speedup_vs_fp32": round(figures["rows_per_s"] / max(fp32["rows_per_s"], 1e-9), 2)})
        logger.info("int8 candidate %s: %s (rule %s)", variant.name, figures, "met" if holds else "not met")
        if holds and chosen is None:
            chosen = variant
            work.replace(model_dir / ONNX_INT8_FILE)
    work.unlink(missing_ok=True)
    if chosen is None:  # nothing met the rule (fp32 itself always does): keep fp32 as the int8 file
        chosen = Variant("fp32", quantize=False)
        write_variant(source, model_dir / ONNX_INT8_FILE, chosen)
    return {
        "rule": asdict(rule),
        "chosen": chosen.name,
        "chosen_variant": chosen.to_dict(),
        "activation_scales": "per token (batch-invariant)",
        "fp32": fp32,
        "candidates": scored,
        "rows": len(reviews) + len(sentences),
    }
