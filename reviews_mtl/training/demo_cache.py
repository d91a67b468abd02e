"""The cached ``demo`` model: trained once per version of the training code and of the data it reads.

Start here: :func:`ensure_demo_model` returns a trained ``demo`` artifact, training it only when no valid
cached one exists (cache outside the clone, ``$REVIEWS_MODEL_CACHE`` or ``~/.cache/reviews-mtl/models``).
The key hashes every source file that shapes the cached model (:data:`FINGERPRINT_FILES`) and the data.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reviews_mtl.data.paths import resolve_data_dir
from reviews_mtl.model.artifact import is_valid_artifact
from reviews_mtl.training.presets import TRAINING_CODE_VERSION

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "REVIEWS_MODEL_CACHE"

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # reviews_mtl/
# What the cached model is made of, relative to the reviews_mtl package: the network and its artifact format, the
# tokenizing, the data readers and the sample, the trainer (activation cache, calibration), its labels, splits,
# metrics and scoring (which set the thresholds and calibrations), the exporter and the int8 rule. A unit test
# checks that each exists.
FINGERPRINT_FILES: tuple[str, ...] = (
    "data/aspect_sources.py",
    "data/samplegen.py",
    "data/sources.py",
    "model/artifact.py",
    "model/modeling.py",
    "model/predictor.py",
    "training/activations.py",
    "training/calibration.py",
    "training/datasets.py",
    "training/encoders.py",
    "training/export_rule.py",
    "training/lexicon.py",
    "training/metrics.py",
    "training/onnx_export.py",
    "training/presets.py",
    "training/quantize.py",
    "training/scoring.py",
    "training/splits.py",
    "training/train.py",
)
SAMPLE_DIR = _PACKAGE_ROOT / "data" / "sample"


def default_cache_root() -> Path:
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reviews-mtl" / "models"


def _code_fingerprint() -> str:
    """A hash of the training code, so a change to it invalidates cached demo models."""
    digest = hashlib.sha256(TRAINING_CODE_VERSION.encode())
    for name in FINGERPRINT_FILES:
        digest.update(name.encode())
        digest.update((_PACKAGE_ROOT / name).read_bytes())
    for path in sorted(SAMPLE_DIR.glob("*.jsonl")):
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
        from reviews_mtl.training.train import train_preset  # torch: only when training is due

        staging = root / f"{target.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        logger.info("training the demo model into %s (data: %s)", target, resolved or "project sample")
        train_preset("demo", data_dir=resolved, output_dir=staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target
