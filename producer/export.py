"""Write reviews out as JSON lines in the input contract, so demos and benchmarks stream real text.

Start here: :func:`reviews_from_data` reads the star-rated sources under ``../shared/data`` (through
:func:`reviews_mtl.data.sources.load_review_pool`) as contract :class:`Review` values, and
:func:`write_jsonl` writes any reviews out. Reviews without an event time get one: spread evenly over a
window that ends now, in input order, so a replay looks like a stream and latencies stay meaningful.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from reviews_mtl.contracts import Review

logger = logging.getLogger(__name__)

DEFAULT_SPAN_S = 7 * 24 * 3600.0


def reviews_from_data(
    data_dir: Path,
    *,
    sources: Sequence[str] | None = None,
    limit: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> list[Review]:
    """Reviews from the shared data as contract objects (the star rating kept as ``rating``)."""
    from reviews_mtl.data.sources import load_review_pool

    pool = load_review_pool(data_dir, tuple(sources) if sources else None)
    if shuffle:
        # Sources come grouped; a shuffle mixes products and sentiments as a live stream would.
        random.Random(seed).shuffle(pool)
    if limit is not None:
        pool = pool[:limit]
    return [item.to_review() for item in pool]


def with_timestamps(
    reviews: Iterable[Review], count: int, *, end: float | None = None, span_s: float = DEFAULT_SPAN_S
) -> Iterator[Review]:
    """Give reviews without ``timestamp`` one, evenly spaced over ``span_s`` seconds ending at ``end``."""
    end = time.time() if end is None else end
    step = span_s / max(count - 1, 1)
    start = end - span_s if count > 1 else end
    for i, review in enumerate(reviews):
        if review.timestamp is None:
            review = review.model_copy(update={"timestamp": round(start + i * step, 3)})
        yield review


def write_jsonl(reviews: Iterable[Review], out: Path | IO[str]) -> int:
    """Write one contract JSON object per line (``None`` fields left out); returns the count written."""
    if isinstance(out, Path):
        if str(out) == "-":
            return write_jsonl(reviews, sys.stdout)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            count = write_jsonl(reviews, fh)
        tmp.replace(out)  # a reader never sees half a file
        logger.info("wrote %d reviews to %s", count, out)
        return count
    count = 0
    for review in reviews:
        out.write(json.dumps(review.model_dump(exclude_none=True), ensure_ascii=False))
        out.write("\n")
        count += 1
    return count
