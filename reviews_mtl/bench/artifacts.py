"""Stand-in model artifacts for benchmarks: right shape and files, untrained heads.

Speed depends on the encoder's shape, the sequence length and the runtime, not on trained weights, so when
the trained ``demo`` artifact is not available (a fresh GPU machine, a CI runner) the benchmark can run on
:func:`build_minilm_artifact`: the bundled pretrained MiniLM-L6 encoder with random heads, exported exactly
as the trainer exports (safetensors, tokenizer, ONNX fp32, dynamic int8). Its predictions mean nothing.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def build_minilm_artifact(out_dir: Path, max_length: int = 64, seed: int = 0) -> Path:
    """Write a MiniLM-L6-shaped artifact (pretrained encoder, random heads) into ``out_dir``."""
    import torch

    from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS
    from reviews_mtl.model.artifact import METRICS_FILE, MODEL_CARD_FILE, is_valid_artifact
    from reviews_mtl.model.export import encoder_config_dict, save_model_files, write_config
    from reviews_mtl.model.modeling import HeadConfig, MultiTaskReviewModel, build_encoder
    from reviews_mtl.model.presets import default_encoder

    out_dir = Path(out_dir)
    if is_valid_artifact(out_dir):
        return out_dir
    started = time.monotonic()
    torch.manual_seed(seed)
    encoder_path = default_encoder()
    encoder, hidden = build_encoder(encoder_path)
    model = MultiTaskReviewModel(encoder, hidden, HeadConfig()).eval()
    save_model_files(model, encoder_path, out_dir)
    write_config(
        out_dir,
        {
            "model_name": "reviews-mtl-bench-minilm",
            "model_version": f"untrained-heads-{seed}",
            "preset": "bench",
            "encoder": "minilm-l6",
            "encoder_config": encoder_config_dict(model),
            "pooling": "mean",
            "max_length": max_length,
            "sentiment_labels": list(SENTIMENT_LABELS),
            "aspect_names": list(ASPECT_NAMES),
            "aspect_thresholds": dict.fromkeys(ASPECT_NAMES, 0.5),
            "heads": model.heads.to_dict(),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    (out_dir / METRICS_FILE).write_text(json.dumps({"note": "untrained heads: for speed only"}) + "\n")
    (out_dir / MODEL_CARD_FILE).write_text("# reviews-mtl bench stand-in\n\nMiniLM-L6 encoder, random heads.\n")
    logger.info("built a MiniLM-shaped bench artifact in %s (%.0fs)", out_dir, time.monotonic() - started)
    return out_dir
