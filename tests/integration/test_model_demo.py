"""The trained ``demo`` artifact (trained once per clean cache, a few minutes on 2 cores): quality sanity,
export parity, and the serving path end to end. Thresholds are floors a working model clears easily and
a broken one (random, constant, mis-ordered outputs) does not."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS
from reviews_mtl.data.sources import load_sample_reviews
from reviews_mtl.model.artifact import validate_artifact
from reviews_mtl.model.runtime import OnnxPredictor, load_predictor

pytestmark = pytest.mark.integration


def _label(stars: int) -> str:
    return "negative" if stars <= 2 else "neutral" if stars == 3 else "positive"


def test_artifact_is_complete(demo_model_dir: Path) -> None:
    validate_artifact(demo_model_dir)
    config = json.loads((demo_model_dir / "config.json").read_text())
    assert config["aspect_names"] == list(ASPECT_NAMES)
    assert config["sentiment_labels"] == list(SENTIMENT_LABELS)
    assert set(config["aspect_thresholds"]) == set(ASPECT_NAMES)
    assert (demo_model_dir / "MODEL_CARD.md").read_text().startswith("# reviews-mtl-demo")


def test_export_parity_and_the_int8_rule_recorded_at_training(demo_model_dir: Path) -> None:
    metrics = json.loads((demo_model_dir / "metrics.json").read_text())
    parity = metrics["parity"]
    assert parity["rows"] >= 100
    assert parity["onnx_fp32"]["allclose_atol_1e-4"], parity["onnx_fp32"]
    # int8 is judged by task metrics on validation (the export rule), not by label agreement: the shipped graph
    # loses at most 0.005 sentiment macro-F1, 0.01 MAE and 0.01 aspect macro-F1 against fp32.
    int8 = metrics["int8"]
    chosen = next((c for c in int8["candidates"] if c["name"] == int8["chosen"]), None)
    if chosen is not None:
        assert chosen["meets_rule"]
        assert chosen["sentiment_f1_drop"] <= 0.005 + 1e-9 and chosen["mae_increase"] <= 0.01 + 1e-9
        assert chosen["aspect_f1_drop"] <= 0.01 + 1e-9
    else:
        assert int8["chosen"] == "fp32"


def test_beats_the_majority_class_on_the_held_out_split(demo_model_dir: Path) -> None:
    metrics = json.loads((demo_model_dir / "metrics.json").read_text())
    test = metrics["test"]
    support = {c: v["support"] for c, v in test["sentiment"]["per_class"].items()}
    majority_accuracy = max(support.values()) / sum(support.values())
    assert test["sentiment"]["accuracy"] > majority_accuracy
    assert test["sentiment"]["macro_f1"] > 0.45  # the majority class scores at most 1/3 here
    mean_rating_mae = test["rating"]["mae"]
    assert mean_rating_mae < 1.0
    assert test["aspects"]["micro_f1"] > 0.2


def test_sample_reviews_through_the_int8_runtime(demo_model_dir: Path) -> None:
    reviews = [r for r in load_sample_reviews() if r.rating != 3][:200]
    predictor = load_predictor(demo_model_dir, runtime="onnx-int8")
    predictions = predictor.predict([r.model_text() for r in reviews])
    truth = [_label(r.rating) for r in reviews]
    accuracy = np.mean([p.sentiment.label == t for p, t in zip(predictions, truth, strict=True)])
    majority = Counter(truth).most_common(1)[0][1] / len(truth)
    # The demo model is trained on real reviews, not on this synthetic sample: a clear margin over the
    # majority class is the floor (measured 0.735 against a majority share of 0.62).
    assert accuracy > majority + 0.05, (accuracy, majority)
    ratings = np.array([p.rating for p in predictions])
    stars = np.array([r.rating for r in reviews])
    assert ratings[stars <= 2].mean() + 1.0 < ratings[stars >= 4].mean()


def test_aspects_follow_the_text(demo_model_dir: Path) -> None:
    predictor = load_predictor(demo_model_dir, runtime="onnx-int8")
    price, service = predictor.predict(
        [
            "The price is far too high, way too expensive for what it is.",
            "Customer service never answered my emails and the seller refused a refund.",
        ]
    )
    assert price.aspects["price"] > service.aspects["price"]
    assert service.aspects["customer_service"] > price.aspects["customer_service"]


def test_int8_and_fp32_agree_on_sample_reviews(demo_model_dir: Path) -> None:
    texts = [r.model_text() for r in load_sample_reviews()]
    fp32 = OnnxPredictor(demo_model_dir, quantized=False).predict_arrays(texts)
    int8 = OnnxPredictor(demo_model_dir, quantized=True).predict_arrays(texts)
    agreement = float((fp32.sentiment_probs.argmax(1) == int8.sentiment_probs.argmax(1)).mean())
    assert agreement >= 0.97, agreement
    assert float(np.abs(fp32.rating - int8.rating).mean()) < 0.1


@pytest.mark.skipif(
    not os.environ.get("REVIEWS_FULL_MODEL_DIR"), reason="set REVIEWS_FULL_MODEL_DIR to a trained full artifact"
)
def test_full_model_int8_meets_the_rule() -> None:
    """The export rule on a full model: the shipped int8 graph within the allowed task-metric losses."""
    full = Path(os.environ["REVIEWS_FULL_MODEL_DIR"])
    metrics = json.loads((full / "metrics.json").read_text())
    assert metrics["parity"]["onnx_fp32"]["allclose_atol_1e-4"]
    int8 = metrics["int8"]
    assert int8["rows"] >= 500
    assert int8["chosen"] == "fp32" or any(c["meets_rule"] for c in int8["candidates"] if c["name"] == int8["chosen"])
