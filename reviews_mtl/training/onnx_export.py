"""Writing the artifact's model files: safetensors, ONNX fp32, int8 (per-token scales), parity.

Start here: :func:`save_model_files` writes weights, tokenizer and ONNX exports for a trained
:class:`~reviews_mtl.model.modeling.MultiTaskReviewModel` (the config is the caller's:
:class:`~reviews_mtl.model.artifact.ArtifactConfig`); :func:`check_parity` compares the ONNX
files against PyTorch on real texts and returns the figures that go into ``metrics.json``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from reviews_mtl.model.artifact import (
    ONNX_DYNAMIC_AXES,
    ONNX_FP32_FILE,
    ONNX_INPUTS,
    ONNX_INT8_FILE,
    ONNX_OUTPUTS,
    ONNX_STAR_OUTPUT,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    ArtifactError,
)
from reviews_mtl.model.modeling import ExportWrapper, MultiTaskReviewModel
from reviews_mtl.model.runtime import OnnxPredictor
from reviews_mtl.model.runtime_torch import TorchPredictor

logger = logging.getLogger(__name__)

ONNX_OPSET = 17


def encoder_config_dict(model: MultiTaskReviewModel) -> dict[str, Any]:
    config: dict[str, Any] = model.encoder.config.to_dict()  # type: ignore[union-attr,operator]
    return {
        k: v
        for k, v in config.items()
        if k not in {"architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype"}
    }


def save_weights(model: MultiTaskReviewModel, out_dir: Path) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE))


def save_tokenizer(encoder_name_or_path: str, out_dir: Path) -> None:
    """The encoder's fast tokenizer as ``tokenizer.json`` (plus its small config files)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder_name_or_path, use_fast=True)
    tokenizer.save_pretrained(str(out_dir))
    if not (out_dir / TOKENIZER_FILE).is_file():
        raise ArtifactError(f"encoder {encoder_name_or_path} has no fast tokenizer (tokenizer.json)")


def export_onnx(model: MultiTaskReviewModel, out_dir: Path, example_length: int = 16) -> Path:
    """Export the inference graph (probabilities out) as ONNX fp32 with dynamic batch and sequence axes."""
    path = out_dir / ONNX_FP32_FILE
    wrapper = ExportWrapper(model.eval().cpu())
    vocab = int(getattr(model.encoder.config, "vocab_size", 1000))  # type: ignore[union-attr]
    ids = torch.randint(5, max(6, vocab - 1), (2, example_length), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, example_length // 2 :] = 0
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (ids, mask),
            str(path),
            input_names=list(ONNX_INPUTS),
            output_names=[*ONNX_OUTPUTS, ONNX_STAR_OUTPUT] if model.heads.has_star_distribution else list(ONNX_OUTPUTS),
            dynamic_axes=ONNX_DYNAMIC_AXES,
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return path


def quantize_int8(out_dir: Path) -> Path:
    """Every encoder projection int8 with per-token activation scales (no validation split to judge by: the
    trainer applies the export rule of :mod:`reviews_mtl.training.export_rule` instead)."""
    from reviews_mtl.training.quantize import Variant, quantize_per_token

    return quantize_per_token(out_dir / ONNX_FP32_FILE, out_dir / ONNX_INT8_FILE, Variant("int8-all"))


def save_model_files(model: MultiTaskReviewModel, encoder_name_or_path: str, out_dir: Path) -> None:
    """Weights, tokenizer, ONNX fp32 and int8 (the config is written by the caller, who knows the rest)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(model, out_dir)
    save_tokenizer(encoder_name_or_path, out_dir)
    export_onnx(model, out_dir)
    quantize_int8(out_dir)


def check_parity(model_dir: Path, texts: Sequence[str], model: MultiTaskReviewModel | None = None) -> dict[str, Any]:
    """Compare ONNX fp32 and int8 with PyTorch fp32 on ``texts``.

    Returns the largest absolute differences, whether fp32 is ``allclose`` (atol 1e-4), and the share of
    rows on which int8 (and fp32) pick the same sentiment label as PyTorch.
    """
    reference = TorchPredictor(model_dir, device="cpu")
    if model is not None:
        reference.model = model.eval().cpu()
    ref = reference.predict_arrays(texts)
    result: dict[str, Any] = {"rows": len(texts)}
    for name, quantized in (("onnx_fp32", False), ("onnx_int8", True)):
        out = OnnxPredictor(model_dir, quantized=quantized).predict_arrays(texts)
        result[name] = {
            "max_abs_diff_sentiment": float(np.abs(out.sentiment_probs - ref.sentiment_probs).max(initial=0.0)),
            "max_abs_diff_rating": float(np.abs(out.rating - ref.rating).max(initial=0.0)),
            "max_abs_diff_aspects": float(np.abs(out.aspect_probs - ref.aspect_probs).max(initial=0.0)),
            "sentiment_label_agreement": float(
                (out.sentiment_probs.argmax(1) == ref.sentiment_probs.argmax(1)).mean() if len(texts) else 1.0
            ),
            "aspect_decision_agreement": float(
                ((out.aspect_probs >= reference.thresholds) == (ref.aspect_probs >= reference.thresholds)).mean()
                if len(texts)
                else 1.0
            ),
        }
    fp32 = result["onnx_fp32"]
    result["onnx_fp32"]["allclose_atol_1e-4"] = bool(
        max(fp32["max_abs_diff_sentiment"], fp32["max_abs_diff_aspects"], fp32["max_abs_diff_rating"] / 4) < 1e-4
    )
    return result
