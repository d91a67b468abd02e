"""The rating heads (regression, stars, ordinal), their losses, the served calibrations and distillation, on a
tiny random encoder."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from reviews_mtl.model.modeling import (
    HeadConfig,
    MultiTaskReviewModel,
    SoftTargets,
    distillation_losses,
    encoder_from_config,
    expected_stars,
    group_stars,
    masked_losses,
    star_distribution,
)
from reviews_mtl.training.onnx_export import check_parity
from reviews_mtl.training.quantize_report import reexport_fp32
from reviews_mtl.training.tiny import TINY_ENCODER_CONFIG, write_untrained_artifact


def _model(rating_head: str, **heads: object) -> MultiTaskReviewModel:
    torch.manual_seed(0)
    encoder, hidden = encoder_from_config(dict(TINY_ENCODER_CONFIG))
    config = HeadConfig(sentiment_hidden=16, rating_hidden=8, aspect_hidden=16, dropout=0.0, rating_head=rating_head,
                        **heads)  # type: ignore[arg-type]
    return MultiTaskReviewModel(encoder, hidden, config).eval()


def _inputs(batch: int = 5, seq: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(100, 2000, (batch, seq))
    mask = torch.ones_like(ids)
    mask[1, 3:] = 0
    return ids, mask


@pytest.mark.parametrize("head", ["stars", "ordinal"])
def test_distribution_heads_give_a_star_distribution_and_its_expectation(head: str) -> None:
    out = _model(head)(*_inputs())
    assert out.star_probs is not None and out.star_probs.shape == (5, 5)
    torch.testing.assert_close(out.star_probs.sum(-1), torch.ones(5))
    assert bool((out.star_probs >= 0).all())
    torch.testing.assert_close(out.rating, (out.star_probs * torch.arange(1.0, 6.0)).sum(-1))


def test_regression_head_gives_no_distribution() -> None:
    out = _model("regression")(*_inputs())
    assert out.star_probs is None and out.star_logits is None
    assert bool(((out.rating > 1) & (out.rating < 5)).all())


def test_ordinal_distribution_from_cumulative_logits() -> None:
    # P(>1)=0.9, P(>2)=0.7, P(>3)=0.4, P(>4)=0.1 → 0.1, 0.2, 0.3, 0.3, 0.1
    above = torch.tensor([[0.9, 0.7, 0.4, 0.1]])
    probs = star_distribution(torch.logit(above), "ordinal")
    torch.testing.assert_close(probs, torch.tensor([[0.1, 0.2, 0.3, 0.3, 0.1]]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(expected_stars(probs), torch.tensor([3.1]), atol=1e-5, rtol=1e-4)


def test_stars_loss_is_cross_entropy_plus_expectation_mse_on_labelled_rows() -> None:
    model = _model("stars", expectation_mse=0.5)
    out = model(*_inputs())
    rating = torch.tensor([5.0, math.nan, 1.0, 3.0, math.nan])
    losses = masked_losses(out, None, rating, None, None, rating_head="stars", expectation_mse=0.5)
    rows = [0, 2, 3]
    assert out.star_logits is not None
    ce = torch.nn.functional.cross_entropy(out.star_logits[rows], torch.tensor([4, 0, 2]))
    mse = torch.mean(((out.rating[rows] - 1) / 4 - (rating[rows] - 1) / 4) ** 2)
    torch.testing.assert_close(losses["rating"], ce + 0.5 * mse)


def test_ordinal_loss_is_binary_cross_entropy_of_each_threshold() -> None:
    model = _model("ordinal", expectation_mse=0.0)
    out = model(*_inputs())
    rating = torch.tensor([2.0, math.nan, math.nan, math.nan, math.nan])
    losses = masked_losses(out, None, rating, None, None, rating_head="ordinal")
    assert out.star_logits is not None
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        out.star_logits[0], torch.tensor([1.0, 0.0, 0.0, 0.0])  # 2 stars: above 1, not above 2, 3, 4
    )
    torch.testing.assert_close(losses["rating"], expected)


def test_the_stars_head_trains() -> None:
    """A few steps on a fixed batch lower the stars loss (the head trains)."""
    model = _model("stars").train()
    ids, mask = _inputs()
    rating = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first: float | None = None
    for _ in range(30):
        out = model(ids, mask, rating=rating)
        assert out.loss is not None
        first = first if first is not None else float(out.loss.detach())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert first is not None and float(out.loss.detach()) < 0.5 * first


def test_pos_weight_scales_positive_aspect_cells() -> None:
    model = _model("regression")
    out = model(*_inputs())
    aspects = torch.zeros(5, 10)
    aspects[0, 0] = 1.0
    weight = torch.zeros(5, 10)
    weight[0, 0] = 1.0
    pos = torch.ones(10)
    base = masked_losses(out, None, None, aspects, weight, aspect_pos_weight=pos)["aspects"]
    pos[0] = 3.0
    weighted = masked_losses(out, None, None, aspects, weight, aspect_pos_weight=pos)["aspects"]
    torch.testing.assert_close(weighted, 3.0 * base)


def test_served_sentiment_from_stars_groups_the_distribution_and_biases_shift_it() -> None:
    model = _model("stars")
    out = model(*_inputs())
    assert out.star_probs is not None
    model.heads = replace(model.heads, sentiment_source="stars")
    served = model.served(out)
    torch.testing.assert_close(served.sentiment_probs, group_stars(out.star_probs))
    # A neutral bias only moves probability into neutral.
    model.heads = replace(model.heads, sentiment_bias=(0.0, 2.0, 0.0))
    biased = model.served(out)
    assert bool((biased.sentiment_probs[:, 1] > served.sentiment_probs[:, 1]).all())
    # A star bias moves the expectation; the served rating is the calibrated expectation.
    model.heads = replace(model.heads, star_bias=(2.0, 0.0, 0.0, 0.0, 0.0))
    shifted = model.served(out)
    assert shifted.star_probs is not None
    assert bool((shifted.rating < served.rating).all())
    torch.testing.assert_close(shifted.rating, expected_stars(shifted.star_probs))


def test_sentiment_from_stars_needs_a_distribution() -> None:
    with pytest.raises(ValueError, match="star distribution"):
        HeadConfig(rating_head="regression", sentiment_source="stars")
    with pytest.raises(ValueError, match="rating_head"):
        HeadConfig(rating_head="nope")


def test_old_head_configs_still_read() -> None:
    old = {"sentiment_hidden": 256, "rating_hidden": 128, "aspect_hidden": 256, "dropout": 0.3,
           "sentiment_labels": ["negative", "neutral", "positive"], "aspect_names": ["a"],
           "sentiment_class_weights": None, "loss_weights": {"sentiment": 1.0, "rating": 0.5, "aspects": 0.5}}
    heads = HeadConfig.from_dict(old)
    assert heads.rating_head == "regression" and heads.sentiment_source == "head"
    assert HeadConfig.from_dict(replace(heads, rating_head="stars", star_bias=(1, 2, 3, 4, 5)).to_dict()).star_bias == (
        1.0, 2.0, 3.0, 4.0, 5.0)


def test_distillation_losses_count_only_rows_with_soft_labels() -> None:
    model = _model("stars")
    out = model(*_inputs())
    nan = float("nan")
    teacher = SoftTargets(
        sentiment=torch.tensor([[0.1, 0.1, 0.8]] + [[nan] * 3] * 4),
        rating=torch.tensor([4.5, nan, nan, nan, nan]),
        aspects=torch.tensor([[0.9] * 10] + [[nan] * 10] * 4),
        stars=torch.tensor([[0.0, 0.0, 0.1, 0.4, 0.5]] + [[nan] * 5] * 4),
    )
    losses = distillation_losses(out, teacher, temperature=1.0)
    expected = torch.nn.functional.kl_div(
        torch.log_softmax(out.sentiment_logits[:1], -1), teacher.sentiment[:1], reduction="batchmean"
    )
    torch.testing.assert_close(losses["sentiment"], expected)
    assert all(bool(torch.isfinite(v)) for v in losses.values())
    assert float(losses["rating"].detach()) > 0 and float(losses["aspects"].detach()) > 0


def test_calibration_tuning_picks_a_band_that_helps_on_balanced_validation() -> None:
    from reviews_mtl.training.calibration import RawOutputs, served_outputs, tune_calibration
    from reviews_mtl.training.datasets import TaskRows

    rng = np.random.default_rng(0)
    stars = np.repeat(np.arange(1, 6), 40)
    sentiment = np.where(stars <= 2, 0, np.where(stars == 3, 1, 2))
    # A model that never says neutral: neutral probability always a bit below the top class.
    probs = np.full((len(stars), 3), 0.05, dtype=np.float32)
    for i, s in enumerate(sentiment):
        top = 2 if s == 1 else s
        probs[i, top] = 0.55
        probs[i, 1] = 0.40 if s == 1 else 0.10
    probs /= probs.sum(1, keepdims=True)
    n = len(stars)
    rows = TaskRows([""] * n, sentiment.astype(np.int64), stars.astype(np.float32), np.zeros((n, 10), np.float32),
                    np.zeros((n, 10), np.float32), stars.astype(np.int64))
    raw = RawOutputs(probs, stars.astype(np.float32) + rng.normal(0, 0.1, n).astype(np.float32),
                     np.zeros((n, 10), np.float32), np.zeros((0, 10), np.float32))
    heads, record = tune_calibration(raw, rows, HeadConfig(), np.full(5, 0.2, np.float32))
    served = served_outputs(raw, heads)
    assert record["sentiment_candidates"]["head"]["balanced_macro_f1_tuned"] > record["sentiment_candidates"]["head"][
        "balanced_macro_f1_plain"]
    assert (served.sentiment.argmax(1) == sentiment).mean() == 1.0


@pytest.mark.parametrize("rating_head", ["stars", "ordinal"])
def test_the_onnx_graph_serves_what_torch_serves_with_sentiment_from_stars(rating_head: str, tmp_path: Path) -> None:
    # The CPU workers run the ONNX graph, the GPU workers and the trainer's calibration run torch: with sentiment
    # grouped from the star distribution (two stars per side) both must give the same probabilities.
    model = _model(rating_head, sentiment_source="stars", sentiment_bias=(0.5, 1.5, 0.0),
                   star_bias=(1.0, 0.5, 0.0, -0.5, 0.2))
    artifact = write_untrained_artifact(model, tmp_path / "artifact", name="t", version="t", preset="tiny",
                                        encoder="random-bert-tiny", max_length=32, note="test")
    texts = ["great value, works", "broke after a day", "ok I guess", "arrived late but fine", "meh"]
    check = check_parity(artifact, texts)
    assert check["onnx_fp32"]["max_abs_diff_rating"] < 1e-4
    assert check["onnx_fp32"]["max_abs_diff_sentiment"] < 1e-4, check["onnx_fp32"]


def test_reexport_rebuilds_a_stale_onnx_graph_from_the_weights(tmp_path: Path) -> None:
    # An artifact whose graph was exported with other calibrations than its config holds (as the graphs exported
    # before group_stars was fixed): the re-export serves what torch serves and says so in metrics.json.
    model = _model("stars", sentiment_source="stars")
    artifact = write_untrained_artifact(model, tmp_path / "artifact", name="t", version="t", preset="tiny",
                                        encoder="random-bert-tiny", max_length=32, note="test")
    config = json.loads((artifact / "config.json").read_text())
    config["heads"]["sentiment_bias"] = [0.5, 2.0, 0.0]
    (artifact / "config.json").write_text(json.dumps(config))
    texts = ["great value, works", "broke after a day", "ok I guess"]
    assert not check_parity(artifact, texts)["onnx_fp32"]["allclose_atol_1e-4"]
    parity = reexport_fp32(artifact, texts)
    assert parity["onnx_fp32"]["allclose_atol_1e-4"] and parity["onnx_fp32"]["sentiment_label_agreement"] == 1.0
    assert json.loads((artifact / "metrics.json").read_text())["parity"] == parity
