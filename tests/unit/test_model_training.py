"""The trainer's pieces on tiny inputs: mixed batches, layer freezing, thread choice, artifact cache key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reviews_mtl.data.aspect_sources import HUMAN_ASPECTS, AspectSentence
from reviews_mtl.data.sources import SourceReview
from reviews_mtl.training.datasets import MixedBatches, review_rows, sentence_rows


def _rows() -> tuple[Any, ...]:
    reviews = [
        SourceReview(f"r{i}", "p", f"review number {i} " + "word " * (i % 7), None, 1 + i % 5, "t") for i in range(40)
    ]
    human = [
        AspectSentence(f"h{i}", f"h{i}", f"the price is {i}", frozenset({"price"}), HUMAN_ASPECTS, "x")
        for i in range(10)
    ]
    weak = [AspectSentence(f"w{i}", f"w{i}", f"it broke after {i} days", frozenset(), (), "y") for i in range(30)]
    r = review_rows(reviews, weak=True, weak_weight=0.3)
    a = sentence_rows(human + weak, weak=True, weak_weight=0.3)
    r.ids = [[1] * (3 + i % 9) for i in range(len(r))]
    a.ids = [[1] * (2 + i % 5) for i in range(len(a))]
    return r, a


def test_every_batch_has_its_aspect_share_and_human_share() -> None:
    reviews, aspects = _rows()
    batches = iter(MixedBatches(reviews, aspects, batch_size=8, aspect_share=0.5, seed=1, window=4, human_share=0.8))
    human_rows = total_aspect_rows = 0
    for _ in range(200):
        review_part, aspect_part = next(batches)
        assert len(review_part) == 4 and len(aspect_part) == 4
        assert np.all(review_part.stars > 0)
        assert np.all(aspect_part.sentiment == -100)
        human_rows += int((aspect_part.aspect_weight >= 1.0).any(axis=1).sum())
        total_aspect_rows += len(aspect_part)
    assert 0.7 < human_rows / total_aspect_rows < 0.9  # 10 human rows of 40 drawn 80% of the time


def test_batches_are_length_grouped() -> None:
    reviews, aspects = _rows()
    batches = iter(MixedBatches(reviews, aspects, batch_size=8, aspect_share=0.0, seed=2, window=5))
    spreads = []
    for _ in range(50):
        review_part, _ = next(batches)
        lengths = [len(x) for x in review_part.ids or []]
        spreads.append(max(lengths) - min(lengths))
    assert np.mean(spreads) < 4  # random batches of lengths 3..11 would spread about 7


def test_freeze_lower_layers() -> None:
    from reviews_mtl.training.tiny import build_tiny_model
    from reviews_mtl.training.train import freeze_lower_layers

    model = build_tiny_model()
    assert freeze_lower_layers(model, 1) > 0
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any("embeddings" in n for n in frozen)
    assert any(".layer.0." in n for n in frozen)
    assert not any(".layer.1." in n for n in frozen)
    assert not any("head" in n for n in frozen)


def test_demo_cache_key_depends_on_the_data(tmp_path: Path) -> None:
    from reviews_mtl.model.artifact import is_valid_artifact
    from reviews_mtl.training.demo_cache import demo_cache_key

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.csv").write_text("1")
    key = demo_cache_key(tmp_path)
    assert key == demo_cache_key(tmp_path)
    assert key != demo_cache_key(None)
    (tmp_path / "a" / "x.csv").write_text("12")
    assert key != demo_cache_key(tmp_path)
    assert not is_valid_artifact(tmp_path)


def test_cached_demo_model_is_reused_without_training(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from reviews_mtl.training import demo_cache

    monkeypatch.delenv("REVIEWS_DATA_DIR", raising=False)
    monkeypatch.setattr(demo_cache, "resolve_data_dir", lambda data_dir=None: None)
    target = tmp_path / f"demo-{demo_cache.demo_cache_key(None)}"
    shutil.copytree(tiny_model_dir, target)
    assert demo_cache.ensure_demo_model(tmp_path) == target  # no training: it would take minutes


def test_demo_cache_fingerprint_lists_only_existing_files_and_the_thresholds() -> None:
    from reviews_mtl.training import demo_cache

    root = Path(demo_cache.__file__).resolve().parents[1]
    assert [name for name in demo_cache.FINGERPRINT_FILES if not (root / name).is_file()] == []
    assert "training/metrics.py" in demo_cache.FINGERPRINT_FILES  # it tunes the cached model's thresholds
