"""Readers of the star-rated review sources in ``../shared/data`` (formats in its README).

Start here: :func:`load_review_pool` reads every ratings source into :class:`SourceReview` values,
drops empty and duplicate texts, and gives each review a stable id and a product id (the source's own
``asin`` where one exists, else one synthetic product per source). :func:`load_sample_reviews` reads the
project's own sample (``reviews_mtl/data/sample``), which needs no external data.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import html
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reviews_mtl.contracts import Review, model_input

logger = logging.getLogger(__name__)

SAMPLE_DIR = Path(__file__).with_name("sample")
SAMPLE_REVIEWS_FILE = SAMPLE_DIR / "reviews.jsonl"

# Sources whose product ids are real; the others carry a synthetic one (one per source where the source is one
# product or product family, one per review for MARC), so a grouped split falls back to grouping by review.
SOURCES_WITH_PRODUCT_IDS = frozenset({"amazon_mi5", "blitzer_mds", "datafiniti_amazon"})

csv.field_size_limit(10_000_000)


@dataclass(frozen=True, slots=True)
class SourceReview:
    """One review with its star rating, from any source."""

    review_id: str
    product_id: str
    text: str
    title: str | None
    rating: int
    source: str
    # Where the source has them (the EDA reads them; the model never does).
    helpful_votes: int | None = None
    recommended: bool | None = None

    def model_text(self) -> str:
        """The text the model reads (:func:`reviews_mtl.contracts.model_input`)."""
        return model_input(self.title, self.text)

    def to_review(self) -> Review:
        """The input-contract record (stars kept as ``rating``); raises ``ValidationError`` past its limits."""
        return Review(review_id=self.review_id, product_id=self.product_id, text=self.text, title=self.title,
                      rating=self.rating)


def _clean(value: str | None) -> str:
    return " ".join(value.split()) if value else ""


def _rating(value: str | float | int | None) -> int | None:
    try:
        stars = round(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return stars if 1 <= stars <= 5 else None


def _int(value: object) -> int | None:
    try:
        return int(float(str(value)))
    except (TypeError, ValueError):
        return None


def _helpful(value: object) -> int | None:
    """Amazon's ``helpful`` pair ``[helpful votes, total votes]`` → the helpful votes."""
    if isinstance(value, list) and value:
        return _int(value[0])
    return None


def _short_hash(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=6).hexdigest()


def _amazon_mi5(root: Path) -> Iterator[SourceReview]:
    for path in sorted((root / "amazon_mi5").glob("*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                obj = json.loads(line)
                rating = _rating(obj.get("overall"))
                asin = str(obj.get("asin") or "")
                if rating is None or not asin:
                    continue
                yield SourceReview(
                    review_id=f"mi5:{obj.get('reviewerID', '')}:{asin}",
                    product_id=f"asin:{asin}",
                    text=_clean(obj.get("reviewText")),
                    title=_clean(obj.get("summary")) or None,
                    rating=rating,
                    source="amazon_mi5",
                    helpful_votes=_helpful(obj.get("helpful")),
                )


_BLITZER_REVIEW = re.compile(r"<review>(.*?)</review>", re.S)
_BLITZER_FIELD = re.compile(r"<(unique_id|asin|rating|title|review_text)>(.*?)</\1>", re.S)


def _blitzer_mds(root: Path) -> Iterator[SourceReview]:
    for path in sorted((root / "blitzer_mds").glob("*/*.review")):
        domain = path.parent.name
        raw = path.read_bytes().decode("latin-1")
        for block in _BLITZER_REVIEW.findall(raw):
            fields = {k: html.unescape(v.strip()) for k, v in _BLITZER_FIELD.findall(block)}
            rating = _rating(fields.get("rating"))
            asin = fields.get("asin", "")
            if rating is None or not asin:
                continue
            uid = fields.get("unique_id") or _short_hash(asin, fields.get("review_text", ""))
            yield SourceReview(
                review_id=f"mds:{domain}:{uid}",
                product_id=f"asin:{asin}",
                text=_clean(fields.get("review_text")),
                title=_clean(fields.get("title")) or None,
                rating=rating,
                source="blitzer_mds",
            )


def _marc_en(root: Path) -> Iterator[SourceReview]:
    for path in sorted((root / "marc_en").glob("*/*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.reader(fh):
                if len(row) < 3:
                    continue
                rating = _rating(row[2])
                if rating is None:
                    continue
                yield SourceReview(
                    review_id=f"marc:{row[0]}",
                    # MARC samples reviews across thousands of products but this export drops the product id:
                    # each review stands for its own unknown product, rather than one product holding a third
                    # of the pool (which made one Kafka partition carry half the stream).
                    product_id=f"marc_en:{row[0]}",
                    text=_clean(row[1]),
                    title=None,
                    rating=rating,
                    source="marc_en",
                )


def _datafiniti(root: Path) -> Iterator[SourceReview]:
    for path in sorted((root / "datafiniti_amazon").glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for row in csv.DictReader(fh):
                rating = _rating(row.get("reviews.rating"))
                asin = (row.get("asins") or "").split(",")[0].strip()
                text = _clean(row.get("reviews.text"))
                if rating is None:
                    continue
                user = row.get("reviews.username") or ""
                yield SourceReview(
                    review_id=f"dfn:{row.get('id', '')}:{_short_hash(text, user)}",
                    product_id=f"asin:{asin}" if asin else "datafiniti_amazon",
                    text=text,
                    title=_clean(row.get("reviews.title")) or None,
                    rating=rating,
                    source="datafiniti_amazon",
                    recommended={"TRUE": True, "FALSE": False}.get((row.get("reviews.doRecommend") or "").upper()),
                )


def _sandisk(root: Path) -> Iterator[SourceReview]:
    for path in sorted((root / "sandisk_amazon").glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                rating = _rating(row.get("overall_rating"))
                if rating is None:
                    continue
                yield SourceReview(
                    review_id=f"sandisk:{i}",
                    product_id="sandisk_amazon",
                    text=_clean(row.get("Review_Text")),
                    title=None,
                    rating=rating,
                    source="sandisk_amazon",
                    helpful_votes=_int(row.get("helpful_yes")),
                )


def _alexa(root: Path) -> Iterator[SourceReview]:
    for path in sorted((root / "amazon_alexa").glob("*.tsv")):
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh, delimiter="\t")):
                rating = _rating(row.get("rating"))
                if rating is None:
                    continue
                yield SourceReview(
                    review_id=f"alexa:{i}",
                    product_id="amazon_alexa",
                    text=_clean(row.get("verified_reviews")),
                    title=None,
                    rating=rating,
                    source="amazon_alexa",
                )


_READERS: dict[str, Callable[[Path], Iterator[SourceReview]]] = {
    "amazon_mi5": _amazon_mi5,
    "blitzer_mds": _blitzer_mds,
    "marc_en": _marc_en,
    "datafiniti_amazon": _datafiniti,
    "sandisk_amazon": _sandisk,
    "amazon_alexa": _alexa,
}
SOURCE_NAMES: tuple[str, ...] = tuple(_READERS)


def _dedupe(reviews: Iterator[SourceReview]) -> list[SourceReview]:
    seen_texts: set[str] = set()
    seen_ids: set[str] = set()
    kept: list[SourceReview] = []
    for review in reviews:
        key = review.text.casefold()
        if not key or key in seen_texts or review.review_id in seen_ids:
            continue
        seen_texts.add(key)
        seen_ids.add(review.review_id)
        kept.append(review)
    return kept


def load_review_pool(data_dir: Path, sources: tuple[str, ...] | None = None) -> list[SourceReview]:
    """Every star-rated review under ``data_dir``, empty and duplicate texts removed, in a stable order.

    A source whose folder is missing is skipped with a warning; ``sources`` picks a subset by name.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory not found: {data_dir}")

    def every() -> Iterator[SourceReview]:
        for name in sources or SOURCE_NAMES:
            if not (data_dir / name).is_dir():
                logger.warning("source %s missing under %s, skipped", name, data_dir)
                continue
            yield from _READERS[name](data_dir)

    pool = _dedupe(every())
    logger.info("loaded %d unique reviews from %s", len(pool), data_dir)
    return pool


def load_sample_reviews(path: Path = SAMPLE_REVIEWS_FILE) -> list[SourceReview]:
    """The project's own sample reviews (JSON lines with the :class:`SourceReview` fields)."""
    reviews: list[SourceReview] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                obj = json.loads(line)
                reviews.append(
                    SourceReview(
                        review_id=str(obj["review_id"]),
                        product_id=str(obj["product_id"]),
                        text=str(obj["text"]),
                        title=obj.get("title"),
                        rating=int(obj["rating"]),
                        source=str(obj.get("source", "sample")),
                    )
                )
    return _dedupe(iter(reviews))
