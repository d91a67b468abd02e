"""Weak aspect labels: a phrase lexicon covering all ten aspects.

``weak_aspects(text)`` returns the aspects whose phrases occur in ``text``. It is the only source of
labels for ``value_for_money``, ``packaging`` and ``durability`` (no human data maps to them), and a
noisy extra for the rest. Patterns are whole-word regular expressions, case-insensitive.
"""

from __future__ import annotations

import re

from reviews_mtl.contracts import ASPECT_NAMES

_LEXICON: dict[str, tuple[str, ...]] = {
    "quality": (
        r"(build|sound|picture|print|audio|video|image|overall) quality",
        r"high[- ]quality",
        r"low[- ]quality",
        r"poor(ly)? quality",
        r"well[- ]made",
        r"poorly made",
        r"cheaply made",
        r"flimsy",
        r"sturdy",
        r"solid(ly)?",
        r"craftsmanship",
        r"premium feel",
        r"feels cheap",
        r"quality",
    ),
    "price": (
        r"price[sd]?",
        r"pricing",
        r"expensive",
        r"inexpensive",
        r"cheap(er|est)?",
        r"overpriced",
        r"costs?",
        r"affordable",
        r"\$\s?\d+",
        r"dollars?",
        r"bucks",
        r"on sale",
        r"discount",
    ),
    "shipping": (
        r"shipp(ing|ed)",
        r"deliver(y|ed)",
        r"arriv(ed|al)",
        r"came (quickly|fast|early|late)",
        r"courier",
        r"tracking",
        r"prime",
        r"dispatch(ed)?",
        r"in transit",
    ),
    "packaging": (
        r"packag(ing|ed|e)",
        r"box(es)?",
        r"wrapp(ed|ing)",
        r"bubble wrap",
        r"envelope",
        r"seal(ed)?",
        r"unbox(ing|ed)?",
        r"padding",
    ),
    "durability": (
        r"durab(le|ility)",
        r"broke(n)?",
        r"break(s|ing)?",
        r"lasts?",
        r"lasted",
        r"held up",
        r"holds? up",
        r"wore out",
        r"worn out",
        r"fell apart",
        r"falls? apart",
        r"stopped working",
        r"quit working",
        r"died after",
        r"after (a|one|two|three|few|\d+) (days?|weeks?|months?|years?)",
        r"cracked",
        r"snapped",
        r"tear(s|ing)?|torn",
        r"rip(ped)?",
    ),
    "appearance": (
        r"looks?( (good|great|nice|cheap|ugly|beautiful|sleek|awesome|cool))?",
        r"design(ed)?",
        r"colou?rs?",
        r"beautiful",
        r"pretty",
        r"ugly",
        r"sleek",
        r"stylish",
        r"attractive",
        r"finish",
        r"appearance",
        r"aesthetic",
        r"gorgeous",
        r"cute",
        r"style",
    ),
    "functionality": (
        r"works?( (great|well|perfectly|fine))?",
        r"work(ed|ing)",
        r"function(s|al|ality|ing)?",
        r"performance",
        r"performs?",
        r"features?",
        r"battery",
        r"speed",
        r"fast",
        r"slow",
        r"freez(e|es|ing)",
        r"crash(es|ed)?",
        r"reliable",
        r"accurate",
        r"signal",
        r"connect(s|ion|ivity)?",
        r"charg(e|es|ing)",
        r"does the job",
    ),
    "ease_of_use": (
        r"easy to (use|set ?up|install|operate|read|navigate|clean)",
        r"easy",
        r"easier",
        r"simple",
        r"user[- ]friendly",
        r"intuitive",
        r"confusing",
        r"complicated",
        r"hard to (use|set ?up|figure)",
        r"difficult",
        r"set ?up",
        r"learning curve",
        r"instructions",
        r"manual",
        r"convenient",
    ),
    "customer_service": (
        r"customer (service|support|care)",
        r"tech(nical)? support",
        r"support (team|staff)",
        r"the seller",
        r"seller",
        r"refund(ed)?",
        r"warranty",
        r"return(ed|ing)? (it|policy)",
        r"replacement",
        r"rma",
        r"(emailed|called|contacted) (them|amazon|the company|support)",
        r"representative",
        r"rep\b",
    ),
    "value_for_money": (
        r"value",
        r"worth (it|the (money|price|cost))",
        r"worth every penny",
        r"bang for (the|your) buck",
        r"for the (money|price)",
        r"waste of money",
        r"money well spent",
        r"good deal",
        r"great deal",
        r"bargain",
        r"not worth",
    ),
}

_PATTERNS: dict[str, re.Pattern[str]] = {
    aspect: re.compile(r"\b(?:" + "|".join(phrases) + r")\b", re.IGNORECASE) for aspect, phrases in _LEXICON.items()
}
if set(_PATTERNS) != set(ASPECT_NAMES):
    raise ValueError("the lexicon must cover exactly the aspects of the contract")


def weak_aspects(text: str) -> set[str]:
    """The aspects whose phrases occur in ``text``."""
    return {aspect for aspect, pattern in _PATTERNS.items() if pattern.search(text)}


def weak_vector(text: str) -> list[float]:
    """``weak_aspects`` as a 0/1 vector in the order of :data:`reviews_mtl.contracts.ASPECT_NAMES`."""
    found = weak_aspects(text)
    return [1.0 if name in found else 0.0 for name in ASPECT_NAMES]
