"""The model artifact: one versioned directory that the trainer writes and every runtime reads.

Start here: :class:`ArtifactConfig` is ``config.json``, typed (:meth:`ArtifactConfig.read` /
:meth:`ArtifactConfig.write`, the one reader and the one writer); :func:`validate_artifact` checks a
whole directory without torch. The ONNX graph's input and output names live here too, next to the config,
so the exporter and the ONNX runtime cannot disagree on them.

Layout::

    config.json        labels, aspect names, per-aspect thresholds, max_length, encoder, version, created
    model.safetensors  the PyTorch weights (encoder + heads)
    model.onnx         ONNX fp32 (inputs input_ids, attention_mask; outputs probabilities, rating and, where the
                       rating head gives one, the star distribution)
    model.int8.onnx    int8 quantization of model.onnx (per-token activations: batch-invariant), the variant the
                       export rule chose (``quantization`` in config.json)
    tokenizer.json     fast tokenizer (plus the encoder's tokenizer_config.json when it has one)
    metrics.json       validation metrics of the model and the TF-IDF baseline, export parity
    MODEL_CARD.md      what it is, how it was trained, how well it does, its limits
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS

# Bump on an incompatible change to config.json; readers refuse any other version with a clear error.
FORMAT_VERSION = 1

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FP32_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
REQUIRED_FILES: tuple[str, ...] = (CONFIG_FILE, WEIGHTS_FILE, ONNX_FP32_FILE, ONNX_INT8_FILE, TOKENIZER_FILE)

# The ONNX graph's interface: token ids in, probabilities and stars out (batch and sequence axes dynamic).
ONNX_INPUTS: tuple[str, ...] = ("input_ids", "attention_mask")
ONNX_OUTPUTS: tuple[str, ...] = ("sentiment_probs", "rating", "aspect_probs")
# The fourth output, only in graphs whose rating head gives a star distribution (batch, 5).
ONNX_STAR_OUTPUT = "star_probs"
ONNX_DYNAMIC_AXES: dict[str, dict[int, str]] = {
    "input_ids": {0: "batch", 1: "sequence"},
    "attention_mask": {0: "batch", 1: "sequence"},
    "sentiment_probs": {0: "batch"},
    "rating": {0: "batch"},
    "aspect_probs": {0: "batch"},
    ONNX_STAR_OUTPUT: {0: "batch"},
}
# How a text longer than max_length is cut: its first tokens ("head", the default and what older artifacts
# did), or its first and last ones ("head_tail": reviews often conclude at the end).
TRUNCATIONS: tuple[str, ...] = ("head", "head_tail")

DEFAULT_THRESHOLD = 0.5


class ArtifactError(Exception):
    """Root of the model package's errors: a missing, incomplete or unreadable artifact."""


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class ArtifactConfig:
    """``config.json`` of an artifact. The keys are those of format version 1; optional ones are omitted when unset."""

    model_name: str
    model_version: str
    preset: str
    encoder: str
    encoder_config: dict[str, Any]  # the Hugging Face config of the encoder: rebuilding it needs no download
    heads: dict[str, Any]  # the head shapes (``HeadConfig.to_dict``)
    max_length: int
    sentiment_labels: tuple[str, ...] = SENTIMENT_LABELS
    aspect_names: tuple[str, ...] = ASPECT_NAMES
    aspect_thresholds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ASPECT_NAMES, DEFAULT_THRESHOLD))
    pooling: str = "mean"
    truncation: str = "head"  # one of TRUNCATIONS
    quantization: dict[str, Any] | None = None  # the int8 variant the export rule chose, and why
    training: dict[str, Any] | None = None  # the TrainConfig of a trained model
    training_code_version: str | None = None
    data_source: str | None = None
    created_at: str = field(default_factory=_utc_now)
    format_version: int = FORMAT_VERSION

    def threshold(self, aspect: str) -> float:
        return float(self.aspect_thresholds.get(aspect, DEFAULT_THRESHOLD))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, ``format_version`` first, unset optional keys left out."""
        values = {k: v for k, v in asdict(self).items() if v is not None}
        values["sentiment_labels"] = list(self.sentiment_labels)
        values["aspect_names"] = list(self.aspect_names)
        return {"format_version": values.pop("format_version"), **values}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = CONFIG_FILE) -> ArtifactConfig:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactError(
                f"{source}: format_version {version!r}, this code reads {FORMAT_VERSION}: "
                "retrain the model or use the code version that wrote it"
            )
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}  # unknown keys: ignored
        try:
            if "sentiment_labels" in values:
                values["sentiment_labels"] = tuple(values["sentiment_labels"])
            if "aspect_names" in values:
                values["aspect_names"] = tuple(values["aspect_names"])
            if "aspect_thresholds" in values:
                values["aspect_thresholds"] = {str(k): float(v) for k, v in values["aspect_thresholds"].items()}
            return cls(**values)
        except (TypeError, ValueError, AttributeError) as exc:  # a missing key or a value of the wrong type
            raise ArtifactError(f"{source}: {exc}") from exc

    @classmethod
    def read(cls, model_dir: Path) -> ArtifactConfig:
        path = Path(model_dir) / CONFIG_FILE
        try:
            with path.open(encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError as exc:
            raise ArtifactError(f"no {CONFIG_FILE} in {model_dir}: not a model artifact") from exc
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ArtifactError(f"{path} is not a JSON object")
        return cls.from_dict(data, str(path))

    def write(self, model_dir: Path) -> Path:
        path = Path(model_dir) / CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


@dataclass(frozen=True)
class PredictionReference:
    """What the model predicted on its validation reviews: the reference a live prediction mix is compared with."""

    sentiment: dict[str, float]  # share of each predicted label
    aspect_rates: dict[str, float]  # share of reviews in which each aspect is detected


def prediction_reference(model_dir: Path) -> PredictionReference | None:
    """From the artifact's ``metrics.json``: the predicted-label shares (columns of the validation confusion matrix)
    and each aspect's predicted rate on validation reviews (support × recall / precision); None when it records
    neither."""
    try:
        validation = json.loads((Path(model_dir) / METRICS_FILE).read_text(encoding="utf-8"))["validation"]
        sentiment = validation["sentiment"]
        columns = [sum(row[j] for row in sentiment["confusion"]) for j in range(len(sentiment["labels"]))]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    total = sum(columns)
    if not total:
        return None
    rates: dict[str, float] = {}
    for name, m in (validation.get("aspects_weak_on_reviews", {}).get("per_aspect") or {}).items():
        n, precision = float(m.get("n") or 0), float(m.get("precision") or 0)
        rates[name] = float(m["support"]) * float(m["recall"]) / precision / n if n and precision else 0.0
    return PredictionReference({label: c / total for label, c in zip(sentiment["labels"], columns, strict=True)},
                               rates)


def validate_artifact(model_dir: Path) -> None:
    """Raise :class:`ArtifactError` unless ``model_dir`` holds every required file and a readable config."""
    missing = [name for name in REQUIRED_FILES if not (Path(model_dir) / name).is_file()]
    if missing:
        raise ArtifactError(f"{model_dir} lacks {', '.join(missing)}")
    ArtifactConfig.read(model_dir)


def is_valid_artifact(model_dir: Path) -> bool:
    try:
        validate_artifact(model_dir)
    except ArtifactError:
        return False
    return True
