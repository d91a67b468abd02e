"""The model on a tiny random encoder: output shapes and ranges, and the masked per-head losses."""

from __future__ import annotations

import math

import pytest
import torch

from reviews_mtl.model.modeling import IGNORE_INDEX, LossWeights, masked_losses, mean_pool
from reviews_mtl.training.tiny import build_tiny_model


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_tiny_model(seed=1)


def _inputs(batch: int = 4, seq: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    ids = torch.randint(100, 2000, (batch, seq))
    mask = torch.ones_like(ids)
    if batch > 1:
        mask[1, 3:] = 0
    return ids, mask


def test_shapes_and_ranges(model: torch.nn.Module) -> None:
    ids, mask = _inputs()
    out = model(ids, mask)
    assert out.sentiment_logits.shape == (4, 3)
    assert out.rating.shape == (4,)
    assert out.aspect_logits.shape == (4, 10)
    assert bool(((out.rating > 1.0) & (out.rating < 5.0)).all())
    assert out.loss is None


def test_padding_does_not_change_the_pooled_output(model: torch.nn.Module) -> None:
    ids, mask = _inputs(batch=1, seq=5)
    short = model(ids, mask)
    padded_ids = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    long = model(padded_ids, padded_mask)
    torch.testing.assert_close(short.sentiment_logits, long.sentiment_logits, atol=1e-5, rtol=1e-4)


def test_mean_pool_ignores_masked_tokens() -> None:
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 2.0]]))


def test_each_head_counts_only_labelled_rows(model: torch.nn.Module) -> None:
    ids, mask = _inputs()
    out = model(ids, mask)
    sentiment = torch.tensor([0, IGNORE_INDEX, IGNORE_INDEX, 2])
    rating = torch.tensor([5.0, math.nan, 1.0, math.nan])
    aspects = torch.ones(4, 10)
    weight = torch.zeros(4, 10)
    weight[2, :3] = 1.0
    losses = masked_losses(out, sentiment, rating, aspects, weight)
    expected_ce = torch.nn.functional.cross_entropy(out.sentiment_logits[[0, 3]], sentiment[[0, 3]])
    torch.testing.assert_close(losses["sentiment"], expected_ce)
    pred = (out.rating[[0, 2]] - 1) / 4
    torch.testing.assert_close(losses["rating"], torch.mean((pred - torch.tensor([1.0, 0.0])) ** 2))
    cell = torch.nn.functional.binary_cross_entropy_with_logits(out.aspect_logits[2, :3], torch.ones(3))
    torch.testing.assert_close(losses["aspects"], cell)
    # Changing a label on an unlabelled row or cell changes nothing.
    aspects2 = aspects.clone()
    aspects2[0] = 0.0
    assert torch.equal(masked_losses(out, sentiment, rating, aspects2, weight)["aspects"], losses["aspects"])


def test_weak_weight_scales_the_aspect_loss(model: torch.nn.Module) -> None:
    ids, mask = _inputs()
    out = model(ids, mask)
    aspects = torch.ones(4, 10)
    full = masked_losses(out, None, None, aspects, torch.ones(4, 10))["aspects"]
    weak = masked_losses(out, None, None, aspects, torch.full((4, 10), 0.3))["aspects"]
    torch.testing.assert_close(weak, 0.3 * full)


def test_no_labels_gives_zero_losses_with_gradients(model: torch.nn.Module) -> None:
    ids, mask = _inputs()
    out = model(
        ids,
        mask,
        sentiment=torch.full((4,), IGNORE_INDEX),
        rating=torch.full((4,), math.nan),
        aspects=torch.zeros(4, 10),
        aspect_weight=torch.zeros(4, 10),
    )
    assert out.loss is not None and float(out.loss.detach()) == 0.0
    out.loss.backward()  # the graph is intact even when no head has labels


def test_total_loss_uses_the_configured_weights(model: torch.nn.Module) -> None:
    ids, mask = _inputs()
    out = model(ids, mask, torch.tensor([0, 1, 2, 0]), torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.zeros(4, 10))
    w = LossWeights()
    expected = (
        w.sentiment * out.losses["sentiment"] + w.rating * out.losses["rating"] + w.aspects * out.losses["aspects"]
    )
    torch.testing.assert_close(out.loss, expected)
