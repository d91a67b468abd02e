"""Readers of the aspect-annotated sentences in ``../shared/data/aspects`` and the project sample.

Start here: :func:`load_aspect_sentences` → :class:`AspectSentence` values. Human labels come from
SemEval-2016 laptops and Laptop-ACOS through the category mapping of the data README (seven aspects;
``value_for_money``, ``packaging`` and ``durability`` have no category). SemEval-2014, Hu & Liu and the
TV/T-shirt sets annotate terms, not categories: their sentences are kept as unlabelled in-domain text
that the weak lexicon labels. Sentences are deduplicated on a normalized key, human-labelled first.
"""

from __future__ import annotations

import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reviews_mtl.contracts import ASPECT_NAMES
from reviews_mtl.data.sources import SAMPLE_DIR

logger = logging.getLogger(__name__)

# The aspects a human category maps to (README); the others have no human labels.
HUMAN_ASPECTS: tuple[str, ...] = (
    "quality",
    "price",
    "shipping",
    "appearance",
    "functionality",
    "ease_of_use",
    "customer_service",
)
# The target set for aspect macro-F1 on human-annotated laptop sentences.
TARGET_ASPECTS: tuple[str, ...] = (
    "quality",
    "price",
    "appearance",
    "functionality",
    "ease_of_use",
    "customer_service",
)

_ATTRIBUTE_MAP = {
    "PRICE": "price",
    "QUALITY": "quality",
    "USABILITY": "ease_of_use",
    "DESIGN_FEATURES": "appearance",
    "OPERATION_PERFORMANCE": "functionality",
}
_ENTITY_MAP = {"SUPPORT": "customer_service", "WARRANTY": "customer_service", "SHIPPING": "shipping"}


def map_category(category: str) -> str | None:
    """``ENTITY#ATTRIBUTE`` → one of our aspects, or ``None`` (README mapping; entity rules first)."""
    entity, _, attribute = category.upper().partition("#")
    return _ENTITY_MAP.get(entity) or _ATTRIBUTE_MAP.get(attribute)


@dataclass(frozen=True, slots=True)
class AspectSentence:
    """One sentence; ``aspects`` are its human labels over ``labelled`` (empty when it has none)."""

    sentence_id: str
    group: str  # the review it came from where known, else the sentence itself (for grouped splits)
    text: str
    aspects: frozenset[str]
    labelled: tuple[str, ...]
    source: str

    @property
    def human(self) -> bool:
        return bool(self.labelled)


def normalize_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def _semeval16(root: Path) -> Iterator[AspectSentence]:
    for path in sorted((root / "semeval16_laptops").glob("*.xml")):
        tree = ET.parse(path)
        for review in tree.getroot().iter("Review"):
            rid = review.get("rid", "")
            for sentence in review.iter("sentence"):
                text = (sentence.findtext("text") or "").strip()
                if not text:
                    continue
                aspects = {
                    a for o in sentence.iter("Opinion") if (a := map_category(o.get("category", ""))) is not None
                }
                # Out-of-scope sentences were not annotated: no opinion there means "not looked at", not
                # "no aspect" (one says "Easy to start up and does not overheat"). Unlabelled, like term-only sets.
                out_of_scope = sentence.get("OutOfScope", "").upper() == "TRUE"
                yield AspectSentence(
                    f"semeval16:{sentence.get('id')}",
                    f"semeval16:{rid}",
                    text,
                    frozenset() if out_of_scope else frozenset(aspects),
                    () if out_of_scope else HUMAN_ASPECTS,
                    "semeval16_laptops",
                )


def _acos(root: Path) -> Iterator[AspectSentence]:
    for path in sorted((root / "acos_laptop").glob("*.tsv")):
        with path.open(encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                parts = line.rstrip("\n").split("\t")
                text = parts[0].strip()
                if not text:
                    continue
                aspects = set()
                for quad in parts[1:]:
                    fields = quad.split()
                    if len(fields) >= 2 and (a := map_category(fields[1])) is not None:
                        aspects.add(a)
                sid = f"acos:{path.stem}:{i}"
                yield AspectSentence(sid, sid, text, frozenset(aspects), HUMAN_ASPECTS, "acos_laptop")


def _unlabelled(root: Path) -> Iterator[AspectSentence]:
    for path in sorted((root / "semeval14").glob("*.xml")):
        for sentence in ET.parse(path).getroot().iter("sentence"):
            text = (sentence.findtext("text") or "").strip()
            if text:
                sid = f"semeval14:{sentence.get('id')}"
                yield AspectSentence(sid, sid, text, frozenset(), (), "semeval14")
    for path in sorted((root / "hu_liu_cr").glob("*.txt")):
        with path.open(encoding="utf-8", errors="replace") as fh:
            for i, line in enumerate(fh):
                if "##" not in line:
                    continue
                text = line.split("##", 1)[1].strip()
                if text:
                    sid = f"huliu:{path.stem}:{i}"
                    yield AspectSentence(sid, sid, text, frozenset(), (), "hu_liu_cr")
    for path in sorted((root / "amazon_tv_tshirt").glob("*.txt")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for i in range(0, len(lines) - 2, 3):
            text = lines[i].replace("$T$", lines[i + 1].strip()).strip()
            if text:
                sid = f"tvshirt:{path.stem}:{i // 3}"
                yield AspectSentence(sid, sid, text, frozenset(), (), "amazon_tv_tshirt")


def load_sample_aspect_sentences(path: Path = SAMPLE_DIR / "aspects.jsonl") -> list[AspectSentence]:
    """The project sample's annotated sentences (all ten aspects labelled)."""
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                obj = json.loads(line)
                sid = str(obj["sentence_id"])
                out.append(
                    AspectSentence(sid, sid, str(obj["text"]), frozenset(obj["aspects"]), ASPECT_NAMES, "sample")
                )
    return out


def load_aspect_sentences(data_dir: Path | None, include_unlabelled: bool = True) -> list[AspectSentence]:
    """Human-labelled sentences (and, optionally, term-annotated ones kept for weak labels), deduplicated.

    ``data_dir`` is the review data folder (its ``aspects`` subfolder is read); ``None`` reads the sample.
    """
    if data_dir is None:
        return load_sample_aspect_sentences()
    root = Path(data_dir) / "aspects"
    if not root.is_dir():
        logger.warning("no aspects folder under %s: using the project sample's sentences", data_dir)
        return load_sample_aspect_sentences()
    readers = [_semeval16(root), _acos(root)]
    if include_unlabelled:
        readers.append(_unlabelled(root))
    every = [sentence for reader in readers for sentence in reader]
    every.sort(key=lambda s: not s.human)  # stable: a repeated sentence keeps its human labels
    seen: set[str] = set()
    out: list[AspectSentence] = []
    for sentence in every:
        key = normalize_key(sentence.text)
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(sentence)
    logger.info("loaded %d aspect sentences (%d human-labelled)", len(out), sum(s.human for s in out))
    return out
