"""int8 graphs: per-token scales make a review's output independent of its batch-mates; the export rule
ships the most quantized graph whose validation metrics stay within the allowed losses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reviews_mtl.model.artifact import ONNX_FP32_FILE, ONNX_INT8_FILE
from reviews_mtl.model.runtime import OnnxPredictor
from reviews_mtl.training.export_rule import Int8Rule, choose_int8
from reviews_mtl.training.quantize import Variant, keeps_fp32, quantize_dynamic_per_tensor, variants

TEXTS = [
    "The battery died after two weeks and customer service never answered.",
    "ok",
    "Beautiful screen, fast, light; the keyboard is a joy and the price was fair for what you get in the box.",
    "Arrived broken.",
    "Works as described but the manual is confusing and setup took an hour, which I did not expect at all.",
] * 13


def _alone_vs_batch(predictor: OnnxPredictor) -> float:
    batch = predictor.predict_arrays(TEXTS)
    worst = 0.0
    for i in (0, 2, 4):
        alone = predictor.predict_arrays([TEXTS[i]])
        worst = max(worst, float(np.abs(alone.rating - batch.rating[i]).max()),
                    float(np.abs(alone.sentiment_probs - batch.sentiment_probs[i]).max()))
    return worst


def test_shipped_int8_gives_the_same_output_for_a_text_in_any_batch(tiny_model_dir: Path) -> None:
    assert _alone_vs_batch(OnnxPredictor(tiny_model_dir, quantized=True)) < 1e-6
    # and the same predictions, as served
    predictor = OnnxPredictor(tiny_model_dir, quantized=True)
    in_batch = predictor.predict(TEXTS)
    assert predictor.predict([TEXTS[2]])[0] == in_batch[2]


def test_per_tensor_dynamic_int8_depends_on_the_batch(tiny_model_copy: Path) -> None:
    """The former default, kept for the report: the flaw the per-token graph fixes."""
    target = tiny_model_copy / "dynamic.onnx"
    quantize_dynamic_per_tensor(tiny_model_copy / ONNX_FP32_FILE, target, Variant("int8-all"))
    assert _alone_vs_batch(OnnxPredictor(tiny_model_copy, onnx_file=target)) > 1e-4


def test_variants_go_from_most_to_least_quantized() -> None:
    names = [v.name for v in variants(3)]
    assert names == ["int8-all", "int8-ffn-out-fp32-layers-0-0", "int8-ffn-out-fp32-layers-0-1",
                     "int8-ffn-out-fp32", "int8-ffn-and-attention-out-fp32", "fp32"]
    v = variants(3)[2]
    assert keeps_fp32("/model/encoder/encoder/layer.1/output/dense/MatMul", v)
    assert not keeps_fp32("/model/encoder/encoder/layer.2/output/dense/MatMul", v)
    assert not keeps_fp32("/model/encoder/encoder/layer.0/attention/output/dense/MatMul", v)
    assert not keeps_fp32("/model/encoder/encoder/layer.0/intermediate/dense/MatMul", v)


def _rows(n_reviews: int = 40) -> tuple[Any, Any]:
    from reviews_mtl.data.aspect_sources import load_sample_aspect_sentences
    from reviews_mtl.data.sources import load_sample_reviews
    from reviews_mtl.training.datasets import review_rows, sentence_rows

    reviews = review_rows(load_sample_reviews()[:n_reviews], weak=False, weak_weight=0.0)
    sentences = sentence_rows(load_sample_aspect_sentences()[:30], weak=False, weak_weight=0.0)
    return reviews, sentences


def test_export_rule_ships_all_int8_when_the_losses_are_within_bounds(tiny_model_copy: Path) -> None:
    reviews, sentences = _rows()
    record = choose_int8(tiny_model_copy, reviews, sentences, {}, Int8Rule(1.0, 10.0, 1.0))
    assert record["chosen"] == "int8-all"
    assert [c["name"] for c in record["candidates"]] == ["int8-all"]  # stops at the first that holds
    assert record["candidates"][0]["meets_rule"] and record["candidates"][0]["rows_per_s"] > 0


def test_export_rule_keeps_projections_fp32_when_int8_loses_too_much(
    tiny_model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule nothing quantized can meet (no loss allowed, metrics made to differ): the fp32 graph ships."""
    from reviews_mtl.training import export_rule

    reviews, sentences = _rows()
    real = export_rule.score_graph

    def scored(model_dir: Path, onnx_file: Path, *args: object, **kwargs: object) -> dict[str, Any]:
        figures = real(model_dir, onnx_file, *args, **kwargs)  # type: ignore[arg-type]
        if onnx_file.name != ONNX_FP32_FILE and b"MatMulInteger" in onnx_file.read_bytes():
            figures["rating_mae"] += 0.02  # what a lossy int8 graph would do
        return figures

    monkeypatch.setattr(export_rule, "score_graph", scored)
    record = choose_int8(tiny_model_copy, reviews, sentences, {}, Int8Rule(0.005, 0.01, 0.01))
    assert record["chosen"] == "fp32"
    assert not any(c["meets_rule"] for c in record["candidates"][:-1])
    assert (tiny_model_copy / ONNX_INT8_FILE).read_bytes() == (tiny_model_copy / ONNX_FP32_FILE).read_bytes()


def test_rule_bounds() -> None:
    rule = Int8Rule()
    fp32 = {"sentiment_macro_f1": 0.70, "rating_mae": 0.50, "aspect_macro_f1": 0.60}
    assert rule.holds(fp32, {"sentiment_macro_f1": 0.696, "rating_mae": 0.509, "aspect_macro_f1": 0.591})
    assert not rule.holds(fp32, {"sentiment_macro_f1": 0.694, "rating_mae": 0.50, "aspect_macro_f1": 0.60})
    assert not rule.holds(fp32, {"sentiment_macro_f1": 0.70, "rating_mae": 0.511, "aspect_macro_f1": 0.60})
    assert not rule.holds(fp32, {"sentiment_macro_f1": 0.70, "rating_mae": 0.50, "aspect_macro_f1": 0.589})


