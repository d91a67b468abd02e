"""Inference from a model artifact: ONNX Runtime (int8 or fp32) on CPU, PyTorch on GPU.

Start here: :func:`load_predictor` → a :class:`~reviews_mtl.model.predictor.Predictor`; the shared
tokenizing, length sorting and padding live in :mod:`reviews_mtl.model.predictor`.

The ONNX path imports only onnxruntime, tokenizers and numpy: never torch or transformers (the import
contract in ``pyproject.toml`` and a unit test hold it). The PyTorch path lives in
:mod:`reviews_mtl.model.runtime_torch`, imported only when the torch runtime is chosen or probed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import get_args

import numpy as np

from reviews_mtl.model.artifact import (
    ONNX_FP32_FILE,
    ONNX_INPUTS,
    ONNX_INT8_FILE,
    ONNX_OUTPUTS,
    ONNX_STAR_OUTPUT,
    ArtifactError,
)
from reviews_mtl.model.predictor import DEFAULT_BATCH_SIZE, EncodedBatch, Predictor, PredictorBase, RawOutputs
from reviews_mtl.settings import RuntimeKind

logger = logging.getLogger(__name__)

# The runtime names are declared once, as the settings' Literal.
RUNTIMES: tuple[str, ...] = get_args(RuntimeKind)


class OnnxPredictor(PredictorBase):
    """ONNX Runtime on CPU; ``quantized`` picks ``model.int8.onnx`` over ``model.onnx`` (``onnx_file``, when
    given, any other graph of the artifact's interface: the export rule's candidates)."""

    def __init__(
        self,
        model_dir: Path,
        quantized: bool = True,
        intra_op_threads: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        onnx_file: Path | None = None,
        bucket: int = 0,
    ) -> None:
        super().__init__(model_dir, batch_size, bucket=bucket)
        import onnxruntime as ort

        path = onnx_file or self.model_dir / (ONNX_INT8_FILE if quantized else ONNX_FP32_FILE)
        if not path.is_file():
            raise ArtifactError(f"{path} not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads > 0:
            options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self.runtime = "onnx-int8" if quantized else "onnx-fp32"
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self.session.get_inputs()}
        has_stars = ONNX_STAR_OUTPUT in {o.name for o in self.session.get_outputs()}
        self._outputs = [*ONNX_OUTPUTS, ONNX_STAR_OUTPUT] if has_stars else list(ONNX_OUTPUTS)

    def run_encoded(self, batch: EncodedBatch) -> RawOutputs:
        feeds = dict(zip(ONNX_INPUTS, (batch.input_ids, batch.attention_mask), strict=True))
        outs = self.session.run(self._outputs, {k: v for k, v in feeds.items() if k in self._input_names})
        stars = np.asarray(outs[3]) if len(outs) > 3 else None
        return RawOutputs(np.asarray(outs[0]), np.asarray(outs[1]), np.asarray(outs[2]), stars)


def _cuda_available() -> bool:
    """True when torch is importable and sees a GPU; probes in a way that costs nothing without torch."""
    if importlib.util.find_spec("torch") is None:
        return False
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    # No NVIDIA driver, no GPU: decide without importing torch (which costs seconds and memory).
    if not (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()):
        return False
    try:
        from reviews_mtl.model.runtime_torch import cuda_available
    except ImportError:
        return False
    return cuda_available()


def resolve_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "torch" if _cuda_available() else "onnx-int8"
    return runtime


def load_predictor(
    model_dir: Path,
    runtime: str = "auto",
    intra_op_threads: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Predictor:
    """A predictor over the artifact in ``model_dir``.

    ``runtime``: ``onnx-int8`` (the CPU default), ``onnx-fp32``, ``torch`` (fp16/bf16 on CUDA, fp32 on
    CPU), or ``auto`` (torch when CUDA is available and torch importable, else onnx-int8).
    """
    chosen = resolve_runtime(runtime)
    logger.info("loading %s predictor from %s", chosen, model_dir)
    if chosen == "torch":
        from reviews_mtl.model.runtime_torch import TorchPredictor

        return TorchPredictor(Path(model_dir), batch_size=batch_size, threads=intra_op_threads)
    return OnnxPredictor(
        Path(model_dir),
        quantized=chosen == "onnx-int8",
        intra_op_threads=intra_op_threads,
        batch_size=batch_size,
    )
