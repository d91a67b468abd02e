"""Distillation: a teacher's outputs on the training pool as soft labels, and a student trained on gold + soft.

Start here: :func:`write_soft_labels` runs any artifact (the teacher: an mpnet or bge model trained where a
GPU is lent, or any trained artifact) over the training split's reviews and aspect sentences and writes
``soft-labels.npz`` (a few MB: one row per text, keyed by a hash of the text). The student's trainer reads it
with ``--soft-labels FILE`` (:func:`attach_soft_labels`): each training row the teacher saw gets the teacher's
sentiment, star distribution (or rating) and aspect probabilities, and its loss becomes
``(1 - w) · gold + w · KD`` (:func:`reviews_mtl.model.modeling.distillation_losses`; ``--distill-weight``).
Validation and test rows are never given soft labels.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from reviews_mtl.training.datasets import Datasets, SoftLabels, TaskRows, build_datasets

logger = logging.getLogger(__name__)


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).digest()


def write_soft_labels(
    teacher_dir: Path, data_dir: Path | None, output: Path, runtime: str = "auto", seed: int = 13, limit: int = 0
) -> dict[str, Any]:
    """The teacher's outputs for every training text (reviews and aspect sentences) into ``output`` (.npz)."""
    from reviews_mtl.model.runtime import load_predictor

    data = build_datasets(data_dir, seed=seed)
    texts = [*data.train_reviews.texts, *data.train_aspects.texts]
    if limit:
        texts = texts[:limit]
    predictor = load_predictor(teacher_dir, runtime=runtime)
    out = predictor.predict_arrays(texts)  # type: ignore[attr-defined]
    keys = np.frombuffer(b"".join(text_key(t) for t in texts), dtype=np.uint8).reshape(len(texts), 12)
    arrays: dict[str, Any] = {
        "keys": keys,
        "sentiment": out.sentiment_probs.astype(np.float32),
        "rating": out.rating.astype(np.float32),
        "aspects": out.aspect_probs.astype(np.float32),
    }
    if out.star_probs is not None:
        arrays["stars"] = out.star_probs.astype(np.float32)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **arrays)
    logger.info("soft labels of %d texts from %s → %s", len(texts), teacher_dir, output)
    return {"rows": len(texts), "teacher": str(teacher_dir), "output": str(output), "stars": "stars" in arrays}


def load_soft_labels(path: Path) -> dict[bytes, tuple[np.ndarray, float, np.ndarray, np.ndarray | None]]:
    with np.load(path) as f:
        stars = f["stars"] if "stars" in f.files else None
        return {
            bytes(k): (f["sentiment"][i], float(f["rating"][i]), f["aspects"][i], None if stars is None else stars[i])
            for i, k in enumerate(f["keys"])
        }


def soft_for(rows: TaskRows, table: dict[bytes, tuple[np.ndarray, float, np.ndarray, np.ndarray | None]]) -> SoftLabels:
    with_stars = any(v[3] is not None for v in table.values())
    soft = SoftLabels.empty(len(rows), with_stars=with_stars)
    for i, text in enumerate(rows.texts):
        hit = table.get(text_key(text))
        if hit is None:
            continue
        soft.sentiment[i], soft.rating[i], soft.aspects[i] = hit[0], hit[1], hit[2]
        if soft.stars is not None and hit[3] is not None:
            soft.stars[i] = hit[3]
    return soft


def attach_soft_labels(data: Datasets, path: Path) -> int:
    """Give the training rows the teacher's outputs from ``path``; returns how many rows got them."""
    table = load_soft_labels(path)
    found = 0
    for rows in (data.train_reviews, data.train_aspects):
        rows.soft = soft_for(rows, table)
        found += int((~np.isnan(rows.soft.rating)).sum())
    logger.info("soft labels for %d of %d training rows from %s", found,
                len(data.train_reviews) + len(data.train_aspects), path)
    data.counts["soft_labelled_rows"] = found
    return found
