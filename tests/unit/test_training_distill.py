"""The whole trainer on the project's sample with a tiny encoder: a student trained on gold + a teacher's soft
labels, through the cached-activations path, calibration and the int8 export rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reviews_mtl.model.artifact import ArtifactConfig
from reviews_mtl.model.runtime import load_predictor
from reviews_mtl.training.distill import load_soft_labels, text_key, write_soft_labels
from reviews_mtl.training.presets import TrainConfig
from reviews_mtl.training.tiny import write_tiny_encoder


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("encoder") / "tiny-bert")


def test_teacher_writes_soft_labels_for_every_training_text(tiny_model_dir: Path, tmp_path: Path) -> None:
    from reviews_mtl.training.datasets import build_datasets

    out = tmp_path / "soft.npz"
    summary = write_soft_labels(tiny_model_dir, None, out, runtime="onnx-fp32")
    data = build_datasets(None)
    table = load_soft_labels(out)
    texts = [*data.train_reviews.texts, *data.train_aspects.texts]
    assert summary["rows"] == len(texts) and len(table) == len(set(texts))  # keyed by text
    sentiment, rating, aspects, _ = table[text_key(data.train_reviews.texts[0])]
    assert sentiment.shape == (3,) and abs(float(sentiment.sum()) - 1) < 1e-4 and 1 <= rating <= 5
    assert aspects.shape == (10,)
    assert text_key(data.validation_reviews.texts[0]) not in table  # never the splits we score on


def test_student_trains_on_gold_and_soft_labels(tiny_model_dir: Path, tiny_encoder: Path, tmp_path: Path) -> None:
    from reviews_mtl.training.train import train

    soft = tmp_path / "soft.npz"
    write_soft_labels(tiny_model_dir, None, soft, runtime="onnx-fp32")
    config = TrainConfig(
        preset="student", encoder=str(tiny_encoder), max_length=32, batch_size=8, max_epochs=1, steps_per_epoch=6,
        freeze_layers=1, cache_activations=True, rating_head="stars", soft_labels=str(soft), distill_weight=0.5,
        parity_rows=20, threads=1,
    )
    metrics = train(config, None, tmp_path / "student")
    assert metrics["counts"]["soft_labelled_rows"] == metrics["counts"]["train_reviews"] + metrics["counts"][
        "train_aspect_rows"]
    losses = metrics["history"][0]["train_loss"]
    assert losses["distill_sentiment"] > 0 and losses["distill_rating"] > 0 and losses["distill_aspects"] > 0
    assert metrics["activation_cache"]["layers"] == 1
    assert metrics["int8"]["chosen"] in {c["name"] for c in metrics["int8"]["candidates"]} | {"fp32"}
    config_json = ArtifactConfig.read(tmp_path / "student")
    assert config_json.heads["rating_head"] == "stars" and config_json.quantization is not None
    predictor = load_predictor(tmp_path / "student", runtime="onnx-int8")
    prediction = predictor.predict(["The lid broke on day two."])[0]
    assert prediction.stars in {1, 2, 3, 4, 5}
    assert json.loads(prediction.model_dump_json())["stars"] == prediction.stars
    assert np.isfinite(prediction.rating)
