"""Train / validation / test splits, grouped so that one product (or one review's sentences) never
sits on two sides. Assignment hashes the group key with a seed: stable across runs and machines.

Reviews group by ``product_id`` where the source has real product ids, else by review; aspect sentences
group by the review they came from where known. Validation chooses (early stopping, thresholds,
recipe); test is held out for :mod:`reviews_mtl.training.evaluate`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from reviews_mtl.data.aspect_sources import AspectSentence
from reviews_mtl.data.sources import SOURCES_WITH_PRODUCT_IDS, SourceReview

T = TypeVar("T")
SplitName = Literal["train", "validation", "test"]

VALIDATION_FRACTION = 0.10
TEST_FRACTION = 0.15


@dataclass(frozen=True)
class Split(Generic[T]):
    train: list[T]
    validation: list[T]
    test: list[T]


def _bucket(key: str, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign(key: str, seed: int = 0, validation: float = VALIDATION_FRACTION, test: float = TEST_FRACTION) -> SplitName:
    if not 0 <= validation < 1 or not 0 <= test < 1 or validation + test >= 1:
        raise ValueError("validation and test fractions must be in [0, 1) and sum below 1")
    u = _bucket(key, seed)
    if u < test:
        return "test"
    if u < test + validation:
        return "validation"
    return "train"


def review_group(review: SourceReview) -> str:
    if review.source in SOURCES_WITH_PRODUCT_IDS or review.source == "sample":
        return review.product_id
    return review.review_id


def split_by_group(
    items: Sequence[T],
    group: Callable[[T], str],
    seed: int = 0,
    validation: float = VALIDATION_FRACTION,
    test: float = TEST_FRACTION,
) -> Split[T]:
    parts: dict[SplitName, list[T]] = {"train": [], "validation": [], "test": []}
    for item in items:
        parts[assign(group(item), seed, validation, test)].append(item)
    return Split(parts["train"], parts["validation"], parts["test"])


def split_reviews(reviews: Sequence[SourceReview], seed: int = 0) -> Split[SourceReview]:
    return split_by_group(reviews, review_group, seed)


def split_sentences(sentences: Sequence[AspectSentence], seed: int = 0) -> Split[AspectSentence]:
    """Human-labelled sentences split by group; unlabelled ones (weak labels only) all go to train."""
    human = split_by_group([s for s in sentences if s.human], lambda s: s.group, seed)
    return Split(human.train + [s for s in sentences if not s.human], human.validation, human.test)
