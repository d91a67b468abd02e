"""A tiny random-weight artifact (hidden 32, 2 layers) for tests and benchmarks: built in seconds.

It has every file a trained artifact has (weights, tokenizer, ONNX fp32 and int8, config), so the
runtimes, the predict command and the worker run on it exactly as on a real model; its predictions
mean nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from reviews_mtl.model.artifact import METRICS_FILE, MODEL_CARD_FILE, ArtifactConfig
from reviews_mtl.model.modeling import HeadConfig, MultiTaskReviewModel, encoder_from_config
from reviews_mtl.training.onnx_export import encoder_config_dict, save_model_files
from reviews_mtl.training.presets import default_encoder

TINY_ENCODER_CONFIG = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}


def build_tiny_model(seed: int = 0) -> MultiTaskReviewModel:
    torch.manual_seed(seed)
    encoder, hidden = encoder_from_config(dict(TINY_ENCODER_CONFIG))
    heads = HeadConfig(sentiment_hidden=16, rating_hidden=8, aspect_hidden=16, dropout=0.1)
    return MultiTaskReviewModel(encoder, hidden, heads).eval()


def build_tiny_artifact(out_dir: Path, seed: int = 0, max_length: int = 64) -> Path:
    """Write a complete artifact with random weights into ``out_dir`` and return it."""
    return write_untrained_artifact(
        build_tiny_model(seed), Path(out_dir), name="reviews-mtl-tiny", version=f"tiny-{seed}", preset="tiny",
        encoder="random-bert-tiny", max_length=max_length, note="random weights, for tests only",
    )


def write_untrained_artifact(
    model: MultiTaskReviewModel, out_dir: Path, *, name: str, version: str, preset: str, encoder: str,
    max_length: int, note: str,
) -> Path:
    """A complete artifact of a model whose heads were never trained (tests, speed benchmarks)."""
    save_model_files(model, default_encoder(), out_dir)
    ArtifactConfig(
        model_name=name,
        model_version=version,
        preset=preset,
        encoder=encoder,
        encoder_config=encoder_config_dict(model),
        heads=model.heads.to_dict(),
        max_length=max_length,
    ).write(out_dir)
    (out_dir / METRICS_FILE).write_text(json.dumps({"note": note}) + "\n", encoding="utf-8")
    (out_dir / MODEL_CARD_FILE).write_text(f"# {name}\n\n{note.capitalize()}.\n", encoding="utf-8")
    return out_dir


def write_tiny_encoder(out_dir: Path, seed: int = 0) -> Path:
    """A tiny random BERT as a Hugging Face directory (config, weights, the MiniLM tokenizer): an encoder the
    trainer loads by path, so tests can run the whole trainer in seconds."""
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    encoder, _ = encoder_from_config(dict(TINY_ENCODER_CONFIG))
    out_dir = Path(out_dir)
    encoder.save_pretrained(str(out_dir))  # type: ignore[operator]
    AutoTokenizer.from_pretrained(default_encoder(), use_fast=True).save_pretrained(str(out_dir))
    return out_dir
