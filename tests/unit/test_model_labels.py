"""Weak labels, aspect category mapping, sources, splits, metrics and threshold tuning: no model needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reviews_mtl.contracts import ASPECT_NAMES
from reviews_mtl.data.aspect_sources import load_sample_aspect_sentences, map_category
from reviews_mtl.data.sources import SourceReview, load_review_pool, load_sample_reviews
from reviews_mtl.training.datasets import review_rows, sentence_rows
from reviews_mtl.training.lexicon import weak_aspects, weak_vector
from reviews_mtl.training.metrics import (
    aspect_metrics,
    rating_metrics,
    sentiment_from_stars,
    sentiment_metrics,
    star_balanced_indices,
    tune_thresholds,
)
from reviews_mtl.training.splits import assign, split_reviews


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Great value for the money.", {"value_for_money"}),
        ("The box was crushed on arrival and it broke after two weeks.", {"packaging", "durability"}),
        ("Setup was easy to use and intuitive.", {"ease_of_use"}),
        ("The seller refused a refund.", {"customer_service"}),
        ("Way too expensive.", {"price"}),
        ("Shipping took three weeks.", {"shipping"}),
        ("It looks beautiful.", {"appearance"}),
        ("Build quality is poor.", {"quality"}),
    ],
)
def test_weak_lexicon_finds_aspects(text: str, expected: set[str]) -> None:
    assert expected <= weak_aspects(text)


def test_weak_lexicon_is_quiet_on_unrelated_text_and_ordered() -> None:
    assert weak_aspects("I gave it to my brother on Sunday.") == set()
    vec = weak_vector("too expensive")
    assert len(vec) == len(ASPECT_NAMES) and vec[ASPECT_NAMES.index("price")] == 1.0


@pytest.mark.parametrize(
    ("category", "aspect"),
    [
        ("LAPTOP#PRICE", "price"),
        ("BATTERY#QUALITY", "quality"),
        ("SOFTWARE#USABILITY", "ease_of_use"),
        ("LAPTOP#DESIGN_FEATURES", "appearance"),
        ("CPU#OPERATION_PERFORMANCE", "functionality"),
        ("SUPPORT#PRICE", "customer_service"),
        ("WARRANTY#GENERAL", "customer_service"),
        ("SHIPPING#GENERAL", "shipping"),
        ("LAPTOP#GENERAL", None),
        ("LAPTOP#MISCELLANEOUS", None),
    ],
)
def test_category_mapping_follows_the_data_readme(category: str, aspect: str | None) -> None:
    assert map_category(category) == aspect


def test_sample_data_is_varied_and_complete() -> None:
    reviews = load_sample_reviews()
    assert len(reviews) >= 300
    assert {r.rating for r in reviews} == {1, 2, 3, 4, 5}
    assert len({r.product_id for r in reviews}) >= 20
    assert len({r.text for r in reviews}) == len(reviews)
    sentences = load_sample_aspect_sentences()
    assert {a for s in sentences for a in s.aspects} == set(ASPECT_NAMES)


def test_review_rows_carry_stars_and_weak_aspects() -> None:
    reviews = [SourceReview("r1", "p1", "Too expensive and it broke.", "Bad", 1, "t")]
    rows = review_rows(reviews, weak=True, weak_weight=0.3)
    assert rows.texts == ["Bad. Too expensive and it broke."]
    assert rows.sentiment.tolist() == [0] and rows.rating.tolist() == [1.0]
    assert rows.aspects[0, ASPECT_NAMES.index("price")] == 1.0
    assert np.allclose(rows.aspect_weight, 0.3)
    assert np.all(review_rows(reviews, weak=False, weak_weight=0.3).aspect_weight == 0)


def test_sentence_rows_mark_human_and_weak_cells() -> None:
    from reviews_mtl.data.aspect_sources import HUMAN_ASPECTS, AspectSentence

    s = AspectSentence("s1", "g1", "Great value, the price is fair.", frozenset({"price"}), HUMAN_ASPECTS, "x")
    rows = sentence_rows([s], weak=True, weak_weight=0.25)
    price, value = ASPECT_NAMES.index("price"), ASPECT_NAMES.index("value_for_money")
    assert rows.aspect_weight[0, price] == 1.0 and rows.aspects[0, price] == 1.0
    assert rows.aspect_weight[0, value] == 0.25 and rows.aspects[0, value] == 1.0
    assert rows.sentiment[0] == -100 and np.isnan(rows.rating[0])
    human_only = sentence_rows([s], weak=False, weak_weight=0.25)
    assert human_only.aspect_weight[0, value] == 0.0


def test_split_is_grouped_by_product_and_stable() -> None:
    reviews = [SourceReview(f"r{i}", f"p{i % 50}", f"text {i}", None, 1 + i % 5, "amazon_mi5") for i in range(2000)]
    split = split_reviews(reviews)
    sides: dict[str, str] = {}
    for name, part in (("train", split.train), ("validation", split.validation), ("test", split.test)):
        for r in part:
            assert sides.setdefault(r.product_id, name) == name
    assert split_reviews(reviews).test == split.test
    assert 0 < len(split.test) < len(split.train)
    with pytest.raises(ValueError):
        assign("x", validation=0.6, test=0.5)


def test_threshold_tuning_finds_the_separating_threshold() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(400, 2)).astype(float)
    probs = np.where(y == 1, 0.35, 0.2) + rng.uniform(-0.05, 0.05, size=y.shape)
    mask = np.ones_like(y, dtype=bool)
    thresholds = tune_thresholds(probs, y, mask, ["a", "b"])
    assert all(0.25 <= t <= 0.3 for t in thresholds.values())
    tuned = aspect_metrics(probs, y, mask, ["a", "b"], thresholds)
    default = aspect_metrics(probs, y, mask, ["a", "b"], {"a": 0.5, "b": 0.5})
    assert tuned["macro_f1"] == pytest.approx(1.0)
    assert default["macro_f1"] == 0.0
    assert default["hamming_loss"] == pytest.approx(float(y.mean()))


def test_metrics_on_known_values() -> None:
    stars = np.array([1, 2, 3, 4, 5, 5])
    assert sentiment_from_stars(stars).tolist() == [0, 0, 1, 2, 2, 2]
    m = sentiment_metrics(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), ["n", "u", "p"])
    assert m["accuracy"] == 0.75 and m["confusion"][1][2] == 1
    r = rating_metrics(np.array([1.0, 5.0]), np.array([2.0, 5.0]))
    assert r["mae"] == 0.5 and r["accuracy_5class"] == 0.5
    idx = star_balanced_indices(stars)
    assert sorted(stars[idx].tolist()) == [1, 2, 3, 4, 5]


@pytest.mark.skipif(not Path("../shared/data").is_dir(), reason="../shared/data is not on this machine")
def test_review_pool_reads_every_source() -> None:
    pool = load_review_pool(Path("../shared/data"))
    assert len(pool) > 40_000
    assert len({r.review_id for r in pool}) == len(pool)
    assert len({r.text.casefold() for r in pool}) == len(pool)
    assert {r.source for r in pool} >= {"amazon_mi5", "blitzer_mds", "marc_en", "sandisk_amazon"}
