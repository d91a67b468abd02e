"""``reviews-mtl evaluate``: an artifact and the TF-IDF baseline on the same held-out split, side by side.

Start here: :func:`evaluate_artifact` rebuilds the splits the trainer used (same data, same seeded
hashing), runs the artifact through the chosen runtime (ONNX int8 by default: what the worker serves),
fits the baseline on the training split, and writes ``evaluation.json`` and ``report.html``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from reviews_mtl.model.artifact import METRICS_FILE
from reviews_mtl.model.predictor import PredictorBase
from reviews_mtl.model.runtime import load_predictor
from reviews_mtl.training.scoring import SplitOutputs, aspect_metrics_by_source, score_split

logger = logging.getLogger(__name__)


def evaluate_artifact(
    model_dir: Path,
    data_dir: Path | None,
    output_dir: Path | None = None,
    runtime: str = "onnx-int8",
    max_reviews: int = 0,
    split: str = "test",
) -> dict[str, Any]:
    """Score ``model_dir`` and the baseline on the test split (or, for comparing recipes, the validation
    split the trainer tuned on); returns the headline figures."""
    from reviews_mtl.training.baseline import run_baseline
    from reviews_mtl.training.datasets import build_datasets
    from reviews_mtl.training.report import statistics, write_html_report

    model_dir = Path(model_dir)
    output_dir = Path(output_dir) if output_dir else model_dir / "report"
    output_dir.mkdir(parents=True, exist_ok=True)
    data = build_datasets(data_dir, weak=True, max_eval_reviews=max_reviews, seed=13)
    predictor = load_predictor(model_dir, runtime=runtime)
    assert isinstance(predictor, PredictorBase)
    config = predictor.config
    review_rows, sentence_rows = (
        (data.test_reviews, data.test_sentences)
        if split == "test"
        else (data.validation_reviews, data.validation_sentences)
    )

    started = time.time()
    reviews = predictor.predict_arrays(review_rows.texts)
    sentences = predictor.predict_arrays(sentence_rows.texts)
    seconds = time.time() - started
    outputs = SplitOutputs(
        reviews.sentiment_probs, reviews.rating, sentences.aspect_probs, review_stars=reviews.star_probs
    )
    thresholds = config.aspect_thresholds
    model_metrics = score_split(outputs, review_rows, sentence_rows, thresholds)
    model_metrics["per_source"] = aspect_metrics_by_source(sentences.aspect_probs, sentence_rows, thresholds)
    model_metrics["runtime"] = runtime
    model_metrics["inference_rows_per_s"] = (len(review_rows) + len(sentence_rows)) / max(seconds, 1e-9)

    baseline = run_baseline(data)
    stats = statistics(review_rows.stars, reviews.sentiment_probs.argmax(1), review_rows.texts, review_rows.sentiment)
    training: dict[str, Any] = {}
    metrics_path = model_dir / METRICS_FILE
    if metrics_path.is_file():
        training = json.loads(metrics_path.read_text())
    result = {
        "model": {"name": config.model_name, "version": config.model_version, "dir": str(model_dir),
                  "encoder": config.encoder, "preset": config.preset, "max_length": config.max_length,
                  "truncation": config.truncation, "rating_head": config.heads.get("rating_head", "regression"),
                  "sentiment_source": config.heads.get("sentiment_source", "head"),
                  "int8": (config.quantization or {}).get("chosen", "per-tensor dynamic (older artifact)"),
                  "runtime": runtime, "created_at": config.created_at},
        "split": split,
        "data": data.data_source,
        "counts": data.counts,
        "test": model_metrics,
        "baseline_test": baseline[split],
        "statistics": stats,
    }
    (output_dir / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_html_report(
        output_dir / "report.html",
        result,
        history=training.get("history", []),
        true_stars=review_rows.stars,
        predicted_rating=np.asarray(reviews.rating),
    )
    logger.info("evaluation written to %s", output_dir)
    return {
        "report": str(output_dir / "report.html"),
        "model": {
            "sentiment_macro_f1": model_metrics["sentiment"]["macro_f1"],
            "rating_mae": model_metrics["rating"]["mae"],
            "aspect_macro_f1": model_metrics["aspects"]["macro_f1"],
            "aspect_macro_f1_target6": model_metrics["aspects_target"]["macro_f1"],
        },
        "baseline": {
            "sentiment_macro_f1": baseline[split]["sentiment"]["macro_f1"],
            "rating_mae": baseline[split]["rating"]["mae"],
            "aspect_macro_f1": baseline[split]["aspects"]["macro_f1"],
            "aspect_macro_f1_target6": baseline[split]["aspects_target"]["macro_f1"],
        },
        "statistics": stats,
    }
