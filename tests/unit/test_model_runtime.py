"""The inference runtimes on the tiny random artifact: ordering, padding, parity, and no torch on the ONNX path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS, Prediction
from reviews_mtl.model.artifact import ArtifactError
from reviews_mtl.model.runtime import OnnxPredictor, load_predictor, resolve_runtime

TEXTS = [
    "Great value, arrived quickly and works perfectly.",
    "no",
    "The battery died after two weeks and customer service never answered my emails. Avoid this seller.",
    "Looks nice.",
    "It is okay for the price, but the packaging was damaged and the manual is confusing to follow at first.",
]


def test_predict_returns_valid_predictions_in_input_order(tiny_model_dir: Path) -> None:
    predictor = load_predictor(tiny_model_dir, runtime="onnx-fp32", intra_op_threads=1)
    batched = predictor.predict(TEXTS)
    one_by_one = [predictor.predict([t])[0] for t in TEXTS]
    assert len(batched) == len(TEXTS)
    for a, b in zip(batched, one_by_one, strict=True):
        assert a.sentiment.label == b.sentiment.label
        assert a.rating == pytest.approx(b.rating, abs=1e-3)
        for name in ASPECT_NAMES:
            assert a.aspects[name] == pytest.approx(b.aspects[name], abs=1e-4)
    # Length sorting happened (the texts are not in length order) and outputs still differ per text.
    assert len({round(p.rating, 4) for p in batched}) > 1
    for pred in batched:
        Prediction.model_validate(pred.model_dump())  # the cheap construction is still a valid record
        assert set(pred.sentiment.probabilities) == set(SENTIMENT_LABELS)
        assert sum(pred.sentiment.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert 1.0 <= pred.rating <= 5.0
        assert list(pred.aspects) == list(ASPECT_NAMES)


def test_small_sub_batches_give_the_same_answers(tiny_model_dir: Path) -> None:
    big = OnnxPredictor(tiny_model_dir, quantized=False, batch_size=64).predict_arrays(TEXTS * 3)
    small = OnnxPredictor(tiny_model_dir, quantized=False, batch_size=2).predict_arrays(TEXTS * 3)
    np.testing.assert_allclose(big.sentiment_probs, small.sentiment_probs, atol=1e-5)
    np.testing.assert_allclose(big.aspect_probs, small.aspect_probs, atol=1e-5)


def test_truncation_to_max_length(tiny_model_dir: Path) -> None:
    predictor = OnnxPredictor(tiny_model_dir, quantized=True)
    batches = predictor.tokenize(["word " * 1000, "short"])
    assert max(b.input_ids.shape[1] for b in batches) == predictor.max_length
    assert len(predictor.predict(["word " * 1000])) == 1


def test_empty_input(tiny_model_dir: Path) -> None:
    assert load_predictor(tiny_model_dir, runtime="onnx-int8").predict([]) == []


def test_thresholds_decide_detected_aspects(tiny_model_copy: Path) -> None:
    config = json.loads((tiny_model_copy / "config.json").read_text())
    config["aspect_thresholds"] = {name: 0.0 for name in ASPECT_NAMES}
    config["aspect_thresholds"]["price"] = 1.01
    (tiny_model_copy / "config.json").write_text(json.dumps(config))
    pred = load_predictor(tiny_model_copy, runtime="onnx-fp32").predict(["fine"])[0]
    assert pred.aspects_detected == [n for n in ASPECT_NAMES if n != "price"]


def test_unknown_runtime_and_missing_artifact(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown runtime"):
        resolve_runtime("tensorrt")
    with pytest.raises(ArtifactError):
        load_predictor(tmp_path, runtime="onnx-int8")


def test_an_artifact_of_another_format_version_is_one_clear_error(tiny_model_copy: Path) -> None:
    config = json.loads((tiny_model_copy / "config.json").read_text())
    for version in (None, 99):  # written before the versioned format, or by a newer code
        if version is None:
            config.pop("format_version", None)
        else:
            config["format_version"] = version
        (tiny_model_copy / "config.json").write_text(json.dumps(config))
        with pytest.raises(ArtifactError, match=f"format_version {version!r}.*retrain"):
            load_predictor(tiny_model_copy, runtime="onnx-fp32")


def test_onnx_path_never_imports_torch_or_transformers(tiny_model_dir: Path) -> None:
    code = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from reviews_mtl.model.runtime import load_predictor\n"
        f"p = load_predictor(Path({str(tiny_model_dir)!r}), runtime='auto')\n"
        "out = p.predict(['works great', 'broke in a day'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "print(json.dumps({'n': len(out), 'heavy': heavy}))\n"
    )
    env_result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert env_result.returncode == 0, env_result.stderr
    result = json.loads(env_result.stdout.strip().splitlines()[-1])
    assert result["n"] == 2
    assert result["heavy"] == []


def test_onnx_fp32_matches_pytorch_and_int8_agrees(tiny_model_dir: Path) -> None:
    from reviews_mtl.training.onnx_export import check_parity

    parity = check_parity(tiny_model_dir, TEXTS * 4)
    assert parity["onnx_fp32"]["allclose_atol_1e-4"], parity
    assert parity["onnx_int8"]["max_abs_diff_sentiment"] < 0.05
    assert parity["onnx_int8"]["sentiment_label_agreement"] >= 0.9


def test_torch_runtime_on_cpu_matches_onnx(tiny_model_dir: Path) -> None:
    torch_pred = load_predictor(tiny_model_dir, runtime="torch").predict(TEXTS)
    onnx_pred = load_predictor(tiny_model_dir, runtime="onnx-fp32").predict(TEXTS)
    for a, b in zip(torch_pred, onnx_pred, strict=True):
        assert a.sentiment.label == b.sentiment.label
        assert a.rating == pytest.approx(b.rating, abs=1e-3)
