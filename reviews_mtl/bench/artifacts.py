"""Stand-in model artifacts for benchmarks: right shape and files, untrained heads.

Speed depends on the encoder's shape, the sequence length and the runtime, not on trained weights, so when
the trained ``demo`` artifact is not available (a fresh GPU machine, a CI runner) the benchmark can run on
:func:`build_minilm_artifact`: the bundled pretrained MiniLM-L6 encoder with random heads, exported exactly
as the trainer exports (safetensors, tokenizer, ONNX fp32, dynamic int8). Its predictions mean nothing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def build_minilm_artifact(out_dir: Path, max_length: int = 64, seed: int = 0) -> Path:
    """Write a MiniLM-L6-shaped artifact (pretrained encoder, random heads) into ``out_dir``."""
    import torch

    from reviews_mtl.model.artifact import is_valid_artifact
    from reviews_mtl.model.modeling import HeadConfig, MultiTaskReviewModel, build_encoder
    from reviews_mtl.training.presets import default_encoder
    from reviews_mtl.training.tiny import write_untrained_artifact

    out_dir = Path(out_dir)
    if is_valid_artifact(out_dir):
        return out_dir
    started = time.monotonic()
    torch.manual_seed(seed)
    encoder_path = default_encoder()
    encoder, hidden = build_encoder(encoder_path)
    model = MultiTaskReviewModel(encoder, hidden, HeadConfig()).eval()
    write_untrained_artifact(
        model, out_dir, name="reviews-mtl-bench-minilm", version=f"untrained-heads-{seed}", preset="bench",
        encoder="minilm-l6", max_length=max_length, note="MiniLM-L6 encoder with untrained heads: for speed only",
    )
    logger.info("built a MiniLM-shaped bench artifact in %s (%.0fs)", out_dir, time.monotonic() - started)
    return out_dir
