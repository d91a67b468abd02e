"""The PyTorch runtime: the artifact's safetensors weights, fp16/bf16 on CUDA, fp32 on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reviews_mtl.model.runtime import DEFAULT_BATCH_SIZE, EncodedBatch, RawOutputs, _PredictorBase


class TorchPredictor(_PredictorBase):
    def __init__(
        self,
        model_dir: Path,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int = 0,
        device: str | None = None,
    ) -> None:
        super().__init__(model_dir, batch_size)
        from reviews_mtl.model.export import load_torch_model

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
        out = self.model(input_ids=ids, attention_mask=mask)
        sentiment = torch.softmax(out.sentiment_logits.float(), dim=-1)
        aspects = torch.sigmoid(out.aspect_logits.float())
        return RawOutputs(
            sentiment.cpu().numpy().astype(np.float32),
            out.rating.float().cpu().numpy().astype(np.float32),
            aspects.cpu().numpy().astype(np.float32),
        )
