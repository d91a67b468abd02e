"""The model artifact: one versioned directory that the trainer writes and every runtime reads.

Start here: :data:`ArtifactFiles` names the files; :func:`read_config` / :func:`validate_artifact`
read and check one directory without torch; :func:`ensure_demo_model` returns a trained ``demo``
artifact, training it only when no valid cached one exists (cache outside the clone, keyed by the
training code version and the data used).

Layout::

    config.json        labels, aspect names, per-aspect thresholds, max_length, encoder, version, created
    model.safetensors  the PyTorch weights (encoder + heads)
    model.onnx         ONNX fp32 (inputs input_ids, attention_mask; outputs probabilities and stars)
    model.int8.onnx    ONNX Runtime dynamic int8 quantization of model.onnx
    tokenizer.json     fast tokenizer (plus the encoder's tokenizer_config.json when it has one)
    metrics.json       validation metrics of the model and the TF-IDF baseline, export parity
    MODEL_CARD.md      what it is, how it was trained, how well it does, its limits
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Bump when training code or a preset changes what a cached demo model would be.
TRAINING_CODE_VERSION = "2"

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FP32_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
REQUIRED_FILES: tuple[str, ...] = (CONFIG_FILE, WEIGHTS_FILE, ONNX_FP32_FILE, ONNX_INT8_FILE, TOKENIZER_FILE)

DATA_DIR_ENV = "REVIEWS_DATA_DIR"
CACHE_DIR_ENV = "REVIEWS_MODEL_CACHE"


class ArtifactError(Exception):
    """Root of the model package's errors: a missing, incomplete or unreadable artifact."""


def read_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / CONFIG_FILE
    try:
        with path.open(encoding="utf-8") as fh:
            config: dict[str, Any] = json.load(fh)
    except FileNotFoundError as exc:
        raise ArtifactError(f"no {CONFIG_FILE} in {model_dir}: not a model artifact") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if config.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format_version {config.get('format_version')} != {FORMAT_VERSION}")
    return config


def validate_artifact(model_dir: Path) -> None:
    """Raise :class:`ArtifactError` unless ``model_dir`` holds every required file and a readable config."""
    missing = [name for name in REQUIRED_FILES if not (Path(model_dir) / name).is_file()]
    if missing:
        raise ArtifactError(f"{model_dir} lacks {', '.join(missing)}")
    read_config(model_dir)


def is_valid_artifact(model_dir: Path) -> bool:
    try:
        validate_artifact(model_dir)
    except ArtifactError:
        return False
    return True


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def resolve_data_dir(data_dir: Path | str | None = None) -> Path | None:
    """The review data: an explicit path, else env ``REVIEWS_DATA_DIR``, else ``<repo>/../shared/data``."""
    if data_dir:
        path = Path(data_dir)
        if not path.is_dir():
            raise ArtifactError(f"data directory not found: {path}")
        return path
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env)
        if not path.is_dir():
            raise ArtifactError(f"{DATA_DIR_ENV}={env} is not a directory")
        return path
    default = repo_root().parent / "shared" / "data"
    return default if default.is_dir() else None


def default_cache_root() -> Path:
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reviews-mtl" / "models"


def _code_fingerprint() -> str:
    """A hash of the training code, so a change to it invalidates cached demo models."""
    digest = hashlib.sha256(TRAINING_CODE_VERSION.encode())
    here = Path(__file__).parent
    for name in sorted(
        (
            "modeling.py",
            "train.py",
            "presets.py",
            "data.py",
            "labels.py",
            "lexicon.py",
            "splits.py",
            "sources.py",
            "aspect_sources.py",
            "export.py",
            "samplegen.py",
        )
    ):
        path = here / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    for path in sorted((here / "sample").glob("*.jsonl")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _data_fingerprint(data_dir: Path | None) -> str:
    if data_dir is None:
        return "sample"
    digest = hashlib.sha256(str(data_dir.resolve()).encode())
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(data_dir)}:{stat.st_size}".encode())
    return digest.hexdigest()


def demo_cache_key(data_dir: Path | None) -> str:
    return hashlib.sha256(f"{_code_fingerprint()}|{_data_fingerprint(data_dir)}".encode()).hexdigest()[:16]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_demo_model(cache_root: Path | None = None, data_dir: Path | str | None = None) -> Path:
    """A trained ``demo`` artifact directory, trained here only when no valid cached one exists.

    Uses the review data in ``data_dir`` / ``$REVIEWS_DATA_DIR`` / ``<repo>/../shared/data`` when one
    exists, else the project's own sample. Concurrent callers wait on a lock rather than train twice.
    """
    resolved = resolve_data_dir(data_dir)
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    target = root / f"demo-{demo_cache_key(resolved)}"
    if is_valid_artifact(target):
        logger.info("using cached demo model %s", target)
        return target
    with _file_lock(root / f"{target.name}.lock"):
        if is_valid_artifact(target):
            return target
        from reviews_mtl.model.train import train_preset

        staging = root / f"{target.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        logger.info("training the demo model into %s (data: %s)", target, resolved or "project sample")
        train_preset("demo", data_dir=resolved, output_dir=staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target
