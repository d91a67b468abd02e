"""``reviews-mtl quantize``: the int8 export rule re-run on an existing artifact, with the figures of every
candidate, and (``--all``) the graphs that are never shipped, for comparison: ONNX Runtime's per-tensor
dynamic quantization (the former default, with and without the FFN output projections in fp32) and static
calibrated QDQ. Each row: validation metrics (the rule's three figures), rows/s on this machine in the same
run, the ratio to fp32, whether it meets the rule, and whether a text's output is the same alone as in a
batch (measured, not assumed).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from reviews_mtl.model.artifact import CONFIG_FILE, METRICS_FILE, ONNX_FP32_FILE, ONNX_INT8_FILE, ArtifactConfig
from reviews_mtl.model.runtime import OnnxPredictor
from reviews_mtl.training.datasets import build_datasets
from reviews_mtl.training.export_rule import Int8Rule, choose_int8, score_graph
from reviews_mtl.training.quantize import (
    Variant,
    calibration_feeds,
    encoder_layers,
    quantize_dynamic_per_tensor,
    quantize_static_qdq,
)

logger = logging.getLogger(__name__)


def batch_invariant(model_dir: Path, onnx_file: Path, texts: list[str], tolerance: float = 1e-6) -> bool:
    """Does each of a few texts get the same outputs alone as inside a batch of ``texts``?"""
    predictor = OnnxPredictor(model_dir, onnx_file=onnx_file)
    together = predictor.predict_arrays(texts)
    for i in range(0, len(texts), max(1, len(texts) // 4)):
        alone = predictor.predict_arrays([texts[i]])
        diff = max(float(np.abs(alone.rating - together.rating[i]).max()),
                   float(np.abs(alone.sentiment_probs - together.sentiment_probs[i]).max()),
                   float(np.abs(alone.aspect_probs - together.aspect_probs[i]).max()))
        if diff > tolerance:
            return False
    return True


def reexport_fp32(model_dir: Path, parity_texts: list[str]) -> dict[str, Any]:
    """Rebuild ``model.onnx`` from the artifact's weights and calibrations (artifacts exported before the ONNX
    graph grouped the star distribution correctly), and record the new parity with torch in ``metrics.json``."""
    from reviews_mtl.model.runtime_torch import load_torch_model
    from reviews_mtl.training.onnx_export import check_parity, export_onnx

    export_onnx(load_torch_model(model_dir), model_dir)
    parity = check_parity(model_dir, parity_texts)
    metrics_path = model_dir / METRICS_FILE
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    metrics["parity"] = parity
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    logger.info("re-exported %s/%s; parity with torch: %s", model_dir, ONNX_FP32_FILE, parity["onnx_fp32"])
    return parity


def quantize_artifact(model_dir: Path, data_dir: Path | None, try_all: bool = False,
                      reexport: bool = False) -> dict[str, Any]:
    model_dir = Path(model_dir)
    config = ArtifactConfig.read(model_dir)
    training = config.training or {}
    data = build_datasets(
        data_dir,
        max_eval_reviews=int(training.get("max_val_reviews", 0)),
        max_eval_sentences=int(training.get("max_eval_sentences", 0)),
        seed=int(training.get("seed", 13)),
    )
    reviews, sentences = data.validation_reviews, data.validation_sentences
    if reexport:
        reexport_fp32(model_dir, [*reviews.texts, *data.train_reviews.texts][: int(training.get("parity_rows", 1000))])
    rule = Int8Rule(
        float(training.get("int8_max_sentiment_f1_drop", 0.005)),
        float(training.get("int8_max_mae_increase", 0.01)),
        float(training.get("int8_max_aspect_f1_drop", 0.01)),
    )
    record = choose_int8(model_dir, reviews, sentences, config.aspect_thresholds, rule, try_all=try_all)
    probe = reviews.texts[:64]
    table = [{"name": "fp32", **record["fp32"], "speedup_vs_fp32": 1.0, "rule": "-", "batch_invariant":
              batch_invariant(model_dir, model_dir / ONNX_FP32_FILE, probe)}]
    for c in record["candidates"]:
        table.append({**c, "rule": "met" if c["meets_rule"] else "no", "batch_invariant": None})
    table[[r["name"] for r in table].index(record["chosen"]) if record["chosen"] in [r["name"] for r in table]
          else 0]["batch_invariant"] = batch_invariant(model_dir, model_dir / ONNX_INT8_FILE, probe)
    if try_all:
        table += _comparisons(model_dir, reviews, sentences, config.aspect_thresholds, rule, record["fp32"], probe)
    ArtifactConfig.write(replace(config, quantization={"chosen": record["chosen"], **record["chosen_variant"],
                                                       "activation_scales": record["activation_scales"]}), model_dir)
    result = {"chosen": record["chosen"], "rule": record["rule"], "table": table, "rows": record["rows"]}
    (model_dir / "quantization.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s/%s and quantization.json", model_dir, CONFIG_FILE)
    return result


def _comparisons(
    model_dir: Path, reviews: Any, sentences: Any, thresholds: dict[str, float], rule: Int8Rule,
    fp32: dict[str, float], probe: list[str],
) -> list[dict[str, Any]]:
    source = model_dir / ONNX_FP32_FILE
    n_layers = encoder_layers(source)
    ffn_fp32 = Variant("ffn-out-fp32", tuple(range(n_layers)))
    rows = []
    calibration = calibration_feeds(OnnxPredictor(model_dir, quantized=False).tokenize(reviews.texts[:512]))
    graphs = [
        ("per-tensor-dynamic, ffn-out fp32 (former default)", "dynamic", ffn_fp32),
        ("per-tensor-dynamic, all", "dynamic", Variant("all")),
        ("static-qdq (min-max), all", "static", Variant("all")),
        ("static-qdq (min-max), ffn-out fp32", "static", ffn_fp32),
    ]
    for name, kind, variant in graphs:
        target = model_dir / "comparison.onnx"
        try:
            if kind == "dynamic":
                quantize_dynamic_per_tensor(source, target, variant)
            else:
                quantize_static_qdq(source, target, variant, calibration)
            figures = score_graph(model_dir, target, reviews, sentences, thresholds)
            holds = rule.holds(fp32, figures)
            rows.append({"name": name, **figures, **rule.losses(fp32, figures), "rule": "met" if holds else "no",
                         "speedup_vs_fp32": round(figures["rows_per_s"] / max(fp32["rows_per_s"], 1e-9), 2),
                         "batch_invariant": batch_invariant(model_dir, target, probe)})
        except Exception as exc:  # a quantizer that cannot handle this graph: say so in the table
            logger.warning("%s failed: %s", name, exc)
        finally:
            target.unlink(missing_ok=True)
            for extra in model_dir.glob("comparison*.onnx*"):
                extra.unlink(missing_ok=True)
    return rows
