"""Training data: label rows for each task, tokenized once, and the mixed-batch sampler.

Start here: :func:`build_datasets` reads reviews and aspect sentences (``../shared/data`` or the sample),
splits them (:mod:`reviews_mtl.training.splits`) and turns them into :class:`TaskRows`: one column per label
with a "no label" marker (sentiment ``-100``, rating ``NaN``, aspect weight ``0``). :class:`MixedBatches`
draws every batch as a fixed share of aspect rows plus star-rated reviews, grouped by length inside a
window of batches so padding stays small.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reviews_mtl.contracts import ASPECT_NAMES
from reviews_mtl.data.aspect_sources import AspectSentence, load_aspect_sentences
from reviews_mtl.data.sources import SourceReview, load_review_pool, load_sample_reviews
from reviews_mtl.model.modeling import IGNORE_INDEX
from reviews_mtl.training.lexicon import weak_vector
from reviews_mtl.training.metrics import sentiment_from_stars
from reviews_mtl.training.splits import split_reviews, split_sentences

logger = logging.getLogger(__name__)

N_ASPECTS = len(ASPECT_NAMES)


@dataclass
class TaskRows:
    """Columnar rows; ``aspect_weight`` 0 = no label, 1 = human label, in (0, 1) = weak label."""

    texts: list[str]
    sentiment: npt.NDArray[np.int64]  # (n,)
    rating: npt.NDArray[np.float32]  # (n,)
    aspects: npt.NDArray[np.float32]  # (n, 10)
    aspect_weight: npt.NDArray[np.float32]  # (n, 10)
    stars: npt.NDArray[np.int64]  # (n,) 0 where unknown
    ids: list[list[int]] | None = None
    soft: SoftLabels | None = None  # a teacher's outputs (distillation), NaN rows where it has none
    sources: list[str] | None = None  # each row's data source (per-source figures)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: Sequence[int] | npt.NDArray[np.intp]) -> TaskRows:
        idx = np.asarray(index, dtype=np.intp)
        return TaskRows(
            [self.texts[i] for i in idx],
            self.sentiment[idx],
            self.rating[idx],
            self.aspects[idx],
            self.aspect_weight[idx],
            self.stars[idx],
            [self.ids[i] for i in idx] if self.ids is not None else None,
            self.soft.subset(idx) if self.soft is not None else None,
            [self.sources[i] for i in idx] if self.sources is not None else None,
        )

    @staticmethod
    def concat(parts: Sequence[TaskRows]) -> TaskRows:
        softs = [p.soft if p.soft is not None else SoftLabels.empty(len(p)) for p in parts]
        return TaskRows(
            [t for p in parts for t in p.texts],
            np.concatenate([p.sentiment for p in parts]),
            np.concatenate([p.rating for p in parts]),
            np.concatenate([p.aspects for p in parts]),
            np.concatenate([p.aspect_weight for p in parts]),
            np.concatenate([p.stars for p in parts]),
            [i for p in parts for i in (p.ids or [])] if all(p.ids is not None for p in parts) else None,
            SoftLabels.concat(softs) if any(p.soft is not None for p in parts) else None,
            [x for p in parts for x in (p.sources or [""] * len(p))] if any(p.sources for p in parts) else None,
        )


@dataclass
class SoftLabels:
    """A teacher's outputs per row (:mod:`reviews_mtl.training.distill`); NaN where the teacher saw no row."""

    sentiment: npt.NDArray[np.float32]  # (n, 3)
    rating: npt.NDArray[np.float32]  # (n,)
    aspects: npt.NDArray[np.float32]  # (n, 10)
    stars: npt.NDArray[np.float32] | None = None  # (n, 5)

    @staticmethod
    def empty(n: int, with_stars: bool = False) -> SoftLabels:
        return SoftLabels(
            np.full((n, 3), np.nan, dtype=np.float32),
            np.full(n, np.nan, dtype=np.float32),
            np.full((n, N_ASPECTS), np.nan, dtype=np.float32),
            np.full((n, 5), np.nan, dtype=np.float32) if with_stars else None,
        )

    def subset(self, idx: npt.NDArray[np.intp]) -> SoftLabels:
        return SoftLabels(
            self.sentiment[idx], self.rating[idx], self.aspects[idx], None if self.stars is None else self.stars[idx]
        )

    @staticmethod
    def concat(parts: Sequence[SoftLabels]) -> SoftLabels:
        with_stars = any(p.stars is not None for p in parts)
        stars = [
            p.stars if p.stars is not None else np.full((len(p.rating), 5), np.nan, dtype=np.float32) for p in parts
        ]
        return SoftLabels(
            np.concatenate([p.sentiment for p in parts]),
            np.concatenate([p.rating for p in parts]),
            np.concatenate([p.aspects for p in parts]),
            np.concatenate(stars) if with_stars else None,
        )


def review_rows(reviews: Sequence[SourceReview], weak: bool, weak_weight: float) -> TaskRows:
    """Stars → sentiment and rating; the lexicon → weak aspect labels on every aspect (when ``weak``)."""
    n = len(reviews)
    texts = [r.model_text() for r in reviews]
    stars = np.array([r.rating for r in reviews], dtype=np.int64)
    aspects = np.array([weak_vector(t) for t in texts], dtype=np.float32).reshape(n, N_ASPECTS)
    weight = np.full((n, N_ASPECTS), weak_weight if weak else 0.0, dtype=np.float32)
    return TaskRows(
        texts, sentiment_from_stars(stars).astype(np.int64), stars.astype(np.float32), aspects, weight, stars,
        sources=[r.source for r in reviews],
    )


def sentence_rows(sentences: Sequence[AspectSentence], weak: bool, weak_weight: float) -> TaskRows:
    """Human labels on the aspects a sentence's source annotates; weak labels on the rest (when ``weak``)."""
    n = len(sentences)
    aspects = np.zeros((n, N_ASPECTS), dtype=np.float32)
    weight = np.zeros((n, N_ASPECTS), dtype=np.float32)
    for i, s in enumerate(sentences):
        weak_row = weak_vector(s.text)
        for j, name in enumerate(ASPECT_NAMES):
            if name in s.labelled:
                aspects[i, j] = 1.0 if name in s.aspects else 0.0
                weight[i, j] = 1.0
            elif weak:
                aspects[i, j] = weak_row[j]
                weight[i, j] = weak_weight
    return TaskRows(
        [s.text for s in sentences],
        np.full(n, IGNORE_INDEX, dtype=np.int64),
        np.full(n, np.nan, dtype=np.float32),
        aspects,
        weight,
        np.zeros(n, dtype=np.int64),
        sources=[s.source for s in sentences],
    )


@dataclass
class Datasets:
    train_reviews: TaskRows
    train_aspects: TaskRows  # human + weak sentences (rows with no aspect label at all are dropped)
    validation_reviews: TaskRows
    validation_sentences: TaskRows  # human-labelled only (weak cells zero-weighted for scoring)
    test_reviews: TaskRows
    test_sentences: TaskRows
    data_source: str
    counts: dict[str, Any]


def _human_only(rows: TaskRows) -> TaskRows:
    rows.aspect_weight = np.where(rows.aspect_weight >= 1.0, 1.0, 0.0).astype(np.float32)
    return rows


def _cap(rows: list[Any], limit: int, seed: int) -> list[Any]:
    if limit and len(rows) > limit:
        return random.Random(seed).sample(rows, limit)
    return rows


def build_datasets(
    data_dir: Path | None,
    weak: bool = True,
    weak_weight: float = 0.3,
    max_train_reviews: int = 0,
    max_eval_reviews: int = 0,
    max_eval_sentences: int = 0,
    seed: int = 13,
) -> Datasets:
    """Everything the trainer needs; ``data_dir`` ``None`` means the project's own sample."""
    if data_dir is None:
        reviews, source = load_sample_reviews(), "sample"
    else:
        reviews, source = load_review_pool(data_dir), str(data_dir)
    sentences = load_aspect_sentences(data_dir)
    review_split = split_reviews(reviews)
    sentence_split = split_sentences(sentences)
    train_reviews = _cap(review_split.train, max_train_reviews, seed)
    val_reviews = _cap(review_split.validation, max_eval_reviews, seed)
    test_reviews = _cap(review_split.test, max_eval_reviews, seed)
    train_aspects = sentence_rows(sentence_split.train, weak, weak_weight)
    keep = np.flatnonzero(train_aspects.aspect_weight.sum(axis=1) > 0)
    datasets = Datasets(
        train_reviews=review_rows(train_reviews, weak, weak_weight),
        train_aspects=train_aspects.subset(keep),
        validation_reviews=review_rows(val_reviews, weak=True, weak_weight=weak_weight),
        validation_sentences=_human_only(
            sentence_rows(_cap(sentence_split.validation, max_eval_sentences, seed), weak=False, weak_weight=0)
        ),
        test_reviews=review_rows(test_reviews, weak=True, weak_weight=weak_weight),
        test_sentences=_human_only(
            sentence_rows(_cap(sentence_split.test, max_eval_sentences, seed), weak=False, weak_weight=0)
        ),
        data_source=source,
        counts={},
    )
    datasets.counts = {
        "reviews_total": len(reviews),
        "train_reviews": len(datasets.train_reviews),
        "train_aspect_rows": len(datasets.train_aspects),
        "train_human_sentences": int(sum(s.human for s in sentence_split.train)),
        "validation_reviews": len(datasets.validation_reviews),
        "validation_sentences": len(datasets.validation_sentences),
        "test_reviews": len(datasets.test_reviews),
        "test_sentences": len(datasets.test_sentences),
    }
    logger.info("datasets: %s", datasets.counts)
    return datasets


class MixedBatches:
    """Endless batches: ``n_aspect`` aspect rows + the rest reviews, each stream reshuffled when used up.

    Rows are drawn a window of batches at a time and sorted by token length inside the window, so each
    batch pads to a similar length; the batch order inside the window is shuffled.
    """

    def __init__(
        self,
        reviews: TaskRows,
        aspects: TaskRows,
        batch_size: int,
        aspect_share: float,
        seed: int,
        window: int = 32,
        human_share: float = 0.0,
    ) -> None:
        if reviews.ids is None or aspects.ids is None:
            raise ValueError("rows must be tokenized first")
        self.reviews, self.aspects = reviews, aspects
        self.n_aspect = min(batch_size, round(batch_size * aspect_share)) if len(aspects) else 0
        self.n_review = batch_size - self.n_aspect if len(reviews) else 0
        if self.n_aspect + self.n_review == 0:
            raise ValueError("no training rows")
        self.window = window
        self.rng = np.random.default_rng(seed)
        # Draw human-labelled rows with probability ``human_share`` (0 = in proportion to their count).
        human = (aspects.aspect_weight >= 1.0).any(axis=1)
        n_human = int(human.sum())
        if 0 < human_share < 1 and 0 < n_human < len(aspects):
            p = np.where(human, human_share / n_human, (1 - human_share) / (len(aspects) - n_human))
            self._aspect_p: npt.NDArray[np.float64] | None = p / p.sum()
        else:
            self._aspect_p = None

    def _stream(self, n: int, p: npt.NDArray[np.float64] | None = None) -> Iterator[int]:
        while True:
            if p is None:
                yield from self.rng.permutation(n).tolist()
            else:
                yield from self.rng.choice(n, size=n, replace=True, p=p).tolist()

    def indices(self) -> Iterator[tuple[list[int], list[int]]]:
        """Endless (review row indices, aspect row indices) per batch."""
        review_stream = self._stream(len(self.reviews))
        aspect_stream = self._stream(len(self.aspects), self._aspect_p)
        assert self.reviews.ids is not None and self.aspects.ids is not None
        review_ids, aspect_ids = self.reviews.ids, self.aspects.ids
        while True:
            r = [next(review_stream) for _ in range(self.n_review * self.window)] if self.n_review else []
            a = [next(aspect_stream) for _ in range(self.n_aspect * self.window)] if self.n_aspect else []
            r.sort(key=lambda i: len(review_ids[i]))
            a.sort(key=lambda i: len(aspect_ids[i]))
            order = self.rng.permutation(self.window)
            for b in order:
                yield r[b * self.n_review : (b + 1) * self.n_review], a[b * self.n_aspect : (b + 1) * self.n_aspect]

    def __iter__(self) -> Iterator[tuple[TaskRows, TaskRows]]:
        for r, a in self.indices():
            yield self.reviews.subset(r), self.aspects.subset(a)

