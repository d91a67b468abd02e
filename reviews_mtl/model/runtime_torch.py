"""The PyTorch runtime: the artifact's safetensors weights, fp16/bf16 on CUDA, fp32 on CPU.

The one module of :mod:`reviews_mtl.model` besides the network itself (:mod:`reviews_mtl.model.modeling`)
that imports torch; :func:`reviews_mtl.model.runtime.load_predictor` loads it only for the ``torch`` runtime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reviews_mtl.model.artifact import WEIGHTS_FILE, ArtifactConfig, ArtifactError
from reviews_mtl.model.modeling import HeadConfig, MultiTaskReviewModel, encoder_from_config
from reviews_mtl.model.predictor import DEFAULT_BATCH_SIZE, EncodedBatch, PredictorBase, RawOutputs


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def load_torch_model(model_dir: Path) -> MultiTaskReviewModel:
    """Rebuild the PyTorch model from an artifact (no download: the encoder's config is in config.json)."""
    from safetensors.torch import load_file

    config = ArtifactConfig.read(model_dir)
    encoder, hidden = encoder_from_config(config.encoder_config)
    model = MultiTaskReviewModel(encoder, hidden, HeadConfig.from_dict(config.heads))
    state = load_file(str(Path(model_dir) / WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ArtifactError(f"weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


class TorchPredictor(PredictorBase):
    def __init__(
        self,
        model_dir: Path,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int = 0,
        device: str | None = None,
    ) -> None:
        super().__init__(model_dir, batch_size)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if threads > 0 and self.device.type == "cpu":
            torch.set_num_threads(threads)
        model = load_torch_model(self.model_dir).eval().to(self.device)
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            model = model.to(dtype)
        self.model = model
        self.runtime = f"torch-{self.device.type}"

    @torch.inference_mode()
    def run_encoded(self, batch: EncodedBatch) -> RawOutputs:
        ids = torch.from_numpy(batch.input_ids).to(self.device, non_blocking=True)
        mask = torch.from_numpy(batch.attention_mask).to(self.device, non_blocking=True)
        served = self.model.served(self.model(input_ids=ids, attention_mask=mask))
        return RawOutputs(
            served.sentiment_probs.cpu().numpy().astype(np.float32),
            served.rating.cpu().numpy().astype(np.float32),
            served.aspect_probs.cpu().numpy().astype(np.float32),
            None if served.star_probs is None else served.star_probs.cpu().numpy().astype(np.float32),
        )
