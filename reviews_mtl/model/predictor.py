"""What every runtime shares: the tokenizer with length sorting and dynamic padding, and the Prediction building.

Start here: :class:`PredictorBase` reads the artifact's config and tokenizer; ``predict(texts)`` tokenizes
(truncation to ``max_length``), sorts by length and pads each sub-batch only to its longest text
(:func:`sort_and_pad`, the one such loop; the trainer's evaluation uses it too), runs the subclass's
``run_encoded`` and returns :class:`~reviews_mtl.contracts.Prediction` values in input order.
Imports numpy and tokenizers only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from reviews_mtl.contracts import Prediction, SentimentResult
from reviews_mtl.model.artifact import TOKENIZER_FILE, ArtifactConfig, ArtifactError

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
    runtime: str  # onnx-int8, onnx-fp32, torch-cuda, ...: stamped on every enriched record
    max_length: int

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...


def pad(ids: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[IntArray, IntArray]:
    """Right-pad token id lists to the longest one: (input_ids, attention_mask), both (rows, width)."""
    width = max(1, max((len(x) for x in ids), default=1))
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, seq in enumerate(ids):
        input_ids[i, : len(seq)] = seq
        mask[i, : len(seq)] = 1
    return input_ids, mask


def sort_and_pad(ids: Sequence[Sequence[int]], batch_size: int, pad_id: int = 0) -> list[EncodedBatch]:
    """Sub-batches of rows sorted by length, each padded only to its own longest row (little padding)."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.intp, count=len(ids))
    order = np.argsort(lengths, kind="stable")
    batches: list[EncodedBatch] = []
    for start in range(0, len(order), batch_size):
        positions = order[start : start + batch_size]
        input_ids, mask = pad([ids[i] for i in positions], pad_id)
        batches.append(EncodedBatch(input_ids, mask, positions))
    return batches


class ArtifactTokenizer:
    """The artifact's fast tokenizer: truncation to ``max_length``, then :func:`sort_and_pad`."""

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
        return sort_and_pad([e.ids for e in encodings], self.batch_size, self.pad_id)


class PredictorBase:
    """Shared by every runtime: config, tokenizer, thresholds and the cheap Prediction building."""

    runtime: str

    def __init__(self, model_dir: Path, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.model_dir = Path(model_dir)
        self.config = ArtifactConfig.read(self.model_dir)
        self.model_name: str = self.config.model_name
        self.model_version: str = self.config.model_version
        self.max_length: int = self.config.max_length
        self.sentiment_labels: tuple[str, ...] = self.config.sentiment_labels
        self.aspect_names: tuple[str, ...] = self.config.aspect_names
        self.thresholds = np.array([self.config.threshold(n) for n in self.aspect_names], dtype=np.float32)
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
