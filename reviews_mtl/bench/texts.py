"""Real review texts for the benchmarks: ``../shared/data`` when present, else the project's own sample."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from reviews_mtl.contracts import Review

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchTexts:
    reviews: tuple[Review, ...]
    origin: str

    @property
    def texts(self) -> list[str]:
        """What the model reads (title and body), as the worker builds it."""
        return [r.model_text() for r in self.reviews]


def load_bench_reviews(data_dir: Path | None = None, limit: int = 4000, seed: int = 0) -> BenchTexts:
    """Up to ``limit`` valid contract reviews in a seeded shuffle (sources come grouped; a stream is mixed)."""
    from reviews_mtl.data.paths import resolve_data_dir
    from reviews_mtl.data.sources import SourceReview, load_review_pool, load_sample_reviews

    resolved = resolve_data_dir(data_dir)
    pool: list[SourceReview]
    if resolved is not None:
        pool = load_review_pool(resolved)
        origin = f"real reviews from {resolved}"
    else:
        pool = load_sample_reviews()
        origin = "the project's own sample (no ../shared/data)"
    random.Random(seed).shuffle(pool)
    reviews: list[Review] = []
    for item in pool:
        if len(reviews) >= limit:
            break
        try:
            reviews.append(item.to_review())
        except ValidationError:
            continue  # past the contract's size limits: the worker would dead-letter it
    if not reviews:
        raise RuntimeError(f"no usable reviews in {origin}")
    logger.info("%d review texts from %s", len(reviews), origin)
    return BenchTexts(tuple(reviews), origin)


def stream(reviews: Sequence[Review], count: int, tag: str) -> Iterator[Review]:
    """``count`` reviews cycling over ``reviews``, each with a review_id unique to ``tag``.

    The worker dead-letters a review_id it already counted for a product, so every phase of a run that
    reuses texts needs fresh ids.
    """
    for i in range(count):
        base = reviews[i % len(reviews)]
        yield base.model_copy(update={"review_id": f"{base.review_id}~{tag}{i}"})
