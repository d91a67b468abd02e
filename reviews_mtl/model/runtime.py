"""Inference from a model artifact: ONNX Runtime (int8 or fp32) on CPU, PyTorch on GPU.

Start here: :func:`load_predictor` → a :class:`Predictor`; ``predict(texts)`` tokenizes with the
artifact's fast tokenizer (truncation to ``max_length``), sorts by length, pads each sub-batch only to
its longest text, runs the model and returns :class:`~reviews_mtl.contracts.Prediction` values in input
order. ``tokenize`` and ``run_encoded`` are the two halves, for benchmarks.

The ONNX path imports only onnxruntime, tokenizers and numpy: never torch or transformers (a unit test
checks ``sys.modules``). The PyTorch path lives in :mod:`reviews_mtl.model.runtime_torch`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from reviews_mtl.contracts import Prediction, SentimentResult
from reviews_mtl.model.artifact import (
    ONNX_FP32_FILE,
    ONNX_INT8_FILE,
    TOKENIZER_FILE,
    ArtifactError,
    read_config,
)

logger = logging.getLogger(__name__)

RuntimeName = Literal["auto", "onnx-int8", "onnx-fp32", "torch"]
RUNTIMES: tuple[str, ...] = ("auto", "onnx-int8", "onnx-fp32", "torch")
DEFAULT_BATCH_SIZE = 64

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """One padded sub-batch; ``positions`` are the indices of its rows in the caller's input."""

    input_ids: IntArray  # (batch, seq)
    attention_mask: IntArray  # (batch, seq)
    positions: npt.NDArray[np.intp]  # (batch,)


@dataclass(frozen=True, slots=True)
class RawOutputs:
    sentiment_probs: FloatArray  # (batch, 3)
    rating: FloatArray  # (batch,)
    aspect_probs: FloatArray  # (batch, 10)


class Predictor(Protocol):
    model_name: str
    model_version: str
    max_length: int

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...


class ArtifactTokenizer:
    """The artifact's fast tokenizer: truncation, length sorting and per-batch dynamic padding."""

    def __init__(self, model_dir: Path, max_length: int, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        from tokenizers import Tokenizer

        path = Path(model_dir) / TOKENIZER_FILE
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ArtifactError(f"cannot load tokenizer {path}: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_length)
        self.pad_id = int(self._tokenizer.token_to_id("[PAD]") or 0)
        self.max_length = max_length
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> list[EncodedBatch]:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = [e.ids for e in encodings]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.intp, count=len(ids))
        order = np.argsort(lengths, kind="stable")
        batches: list[EncodedBatch] = []
        for start in range(0, len(order), self.batch_size):
            positions = order[start : start + self.batch_size]
            width = max(1, int(lengths[positions].max()))
            input_ids = np.full((len(positions), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(positions), width), dtype=np.int64)
            for row, pos in enumerate(positions):
                seq = ids[pos]
                input_ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            batches.append(EncodedBatch(input_ids, mask, positions))
        return batches


class _PredictorBase:
    """Shared by every runtime: config, tokenizer, thresholds and the cheap Prediction building."""

    def __init__(self, model_dir: Path, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.model_dir = Path(model_dir)
        self.config: dict[str, Any] = read_config(self.model_dir)
        self.model_name: str = str(self.config["model_name"])
        self.model_version: str = str(self.config["model_version"])
        self.max_length: int = int(self.config["max_length"])
        self.sentiment_labels: tuple[str, ...] = tuple(self.config["sentiment_labels"])
        self.aspect_names: tuple[str, ...] = tuple(self.config["aspect_names"])
        thresholds = self.config.get("aspect_thresholds", {})
        self.thresholds = np.array([float(thresholds.get(n, 0.5)) for n in self.aspect_names], dtype=np.float32)
        self.tokenizer = ArtifactTokenizer(self.model_dir, self.max_length, batch_size)

    def tokenize(self, texts: Sequence[str]) -> list[EncodedBatch]:
        return self.tokenizer.encode(texts)

    def run_encoded(self, batch: EncodedBatch) -> RawOutputs:
        raise NotImplementedError

    def predict_arrays(self, texts: Sequence[str]) -> RawOutputs:
        """Raw model outputs for ``texts`` in input order."""
        n = len(texts)
        sentiment = np.zeros((n, len(self.sentiment_labels)), dtype=np.float32)
        rating = np.zeros((n,), dtype=np.float32)
        aspects = np.zeros((n, len(self.aspect_names)), dtype=np.float32)
        if n:
            for batch in self.tokenize(texts):
                out = self.run_encoded(batch)
                sentiment[batch.positions] = out.sentiment_probs
                rating[batch.positions] = out.rating
                aspects[batch.positions] = out.aspect_probs
        return RawOutputs(sentiment, rating, aspects)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return self.to_predictions(self.predict_arrays(texts))

    def to_predictions(self, out: RawOutputs) -> list[Prediction]:
        labels = self.sentiment_labels
        names = self.aspect_names
        best = out.sentiment_probs.argmax(axis=1).tolist()
        sentiment_rows = out.sentiment_probs.round(6).tolist()
        aspect_rows = out.aspect_probs.round(6).tolist()
        detected = (out.aspect_probs >= self.thresholds).tolist()
        ratings = np.clip(out.rating, 1.0, 5.0).round(4).tolist()
        predictions: list[Prediction] = []
        for i, label_index in enumerate(best):
            probs = sentiment_rows[i]
            sentiment = SentimentResult.model_construct(
                label=labels[label_index],
                confidence=probs[label_index],
                probabilities=dict(zip(labels, probs, strict=True)),
            )
            predictions.append(
                Prediction.model_construct(
                    sentiment=sentiment,
                    rating=ratings[i],
                    aspects=dict(zip(names, aspect_rows[i], strict=True)),
                    aspects_detected=[n for n, hit in zip(names, detected[i], strict=True) if hit],
                )
            )
        return predictions


class OnnxPredictor(_PredictorBase):
    """ONNX Runtime on CPU; ``quantized`` picks ``model.int8.onnx`` over ``model.onnx``."""

    def __init__(
        self,
        model_dir: Path,
        quantized: bool = True,
        intra_op_threads: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        super().__init__(model_dir, batch_size)
        import onnxruntime as ort

        path = self.model_dir / (ONNX_INT8_FILE if quantized else ONNX_FP32_FILE)
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

    def run_encoded(self, batch: EncodedBatch) -> RawOutputs:
        feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        sentiment, rating, aspects = self.session.run(
            ["sentiment_probs", "rating", "aspect_probs"],
            {k: v for k, v in feeds.items() if k in self._input_names},
        )
        return RawOutputs(np.asarray(sentiment), np.asarray(rating), np.asarray(aspects))


def _cuda_available() -> bool:
    """True when torch is importable and sees a GPU; probes in a way that costs nothing without torch."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    # No NVIDIA driver, no GPU: decide without importing torch (which costs seconds and memory).
    if not (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


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
