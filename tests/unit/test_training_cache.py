"""The cached-activations path (lower layers once, upper layers + heads from the cache), the measured thread
count, and head+tail truncation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reviews_mtl.model.predictor import truncate_ids
from reviews_mtl.training.activations import cached_activations, compute_activations
from reviews_mtl.training.threads import ThreadTuner
from reviews_mtl.training.tiny import build_tiny_model

IDS = [[101, *range(200, 200 + n), 102] for n in (3, 9, 1, 14, 6)]


def test_lower_then_upper_equals_the_whole_encoder() -> None:
    model = build_tiny_model(seed=3)
    ids = torch.tensor([IDS[1][:8], IDS[3][:8]])
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    whole = model(ids, mask)
    parted = model(None, mask, hidden_states=model.lower(ids, mask, 1), from_layer=1)
    torch.testing.assert_close(parted.sentiment_logits, whole.sentiment_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(parted.rating, whole.rating, atol=1e-5, rtol=1e-4)


def test_cached_rows_give_what_the_model_gives_on_token_ids(tmp_path: Path) -> None:
    model = build_tiny_model(seed=4)
    store = compute_activations(model, IDS, n_layers=1, batch_size=2)
    assert len(store) == len(IDS)
    assert store.data.dtype == np.float16
    hidden, mask = store.batch([3, 0], torch.device("cpu"))
    assert hidden.shape[:2] == (2, len(IDS[3])) and int(mask[1].sum()) == len(IDS[0])
    from_cache = model(None, mask, hidden_states=hidden, from_layer=1)
    ids = torch.zeros_like(mask)
    ids[0, : len(IDS[3])] = torch.tensor(IDS[3])
    ids[1, : len(IDS[0])] = torch.tensor(IDS[0])
    direct = model(ids, mask)
    # fp16 storage: close, not equal
    torch.testing.assert_close(from_cache.aspect_logits, direct.aspect_logits, atol=2e-2, rtol=1e-2)


def test_disk_cache_is_reused_and_keyed_by_the_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reviews_mtl.training import activations

    model = build_tiny_model(seed=5)
    first = cached_activations(model, IDS, 1, tmp_path)
    calls = []
    monkeypatch.setattr(activations, "compute_activations", lambda *a, **k: calls.append(1))
    again = cached_activations(model, IDS, 1, tmp_path)
    assert calls == [] and np.array_equal(np.asarray(again.data), np.asarray(first.data))
    assert len(list(tmp_path.iterdir())) == 1
    monkeypatch.undo()
    cached_activations(model, IDS[:3], 1, tmp_path)  # other rows: another entry
    assert len(list(tmp_path.iterdir())) == 2


def test_thread_tuner_keeps_the_faster_count_and_checks_again() -> None:
    tuner = ThreadTuner(candidates=(1, 2), probe_steps=2, recheck_steps=10)
    costs = {1: 1.0, 2: 3.0}  # one thread faster (a loaded machine)
    for _ in range(10):
        tuner.before_step()
        tuner.after_step(costs[torch.get_num_threads()], tokens=100)
    assert tuner.chosen == 1 and torch.get_num_threads() == 1
    costs = {1: 3.0, 2: 1.0}  # the neighbours left
    for _ in range(10):
        tuner.before_step()
        tuner.after_step(costs[torch.get_num_threads()], tokens=100)
    assert tuner.chosen == 2
    assert [c["threads"] for c in tuner.choices] == [1.0, 2.0]


def test_pinned_threads_measure_nothing() -> None:
    tuner = ThreadTuner(fixed=1)
    tuner.before_step()
    tuner.after_step(1.0, 10)
    assert torch.get_num_threads() == 1 and tuner.choices == []


def test_head_tail_truncation_keeps_both_ends() -> None:
    ids = [101, *range(1, 21), 102]
    assert truncate_ids(ids, 8, "head") == [101, 1, 2, 3, 4, 5, 6, 102]
    assert truncate_ids(ids, 8, "head_tail") == [101, 1, 2, 3, 18, 19, 20, 102]
    assert truncate_ids(ids[:5], 8, "head_tail") == ids[:5]
