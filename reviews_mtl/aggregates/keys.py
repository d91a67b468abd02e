"""The Redis key schema of the per-product aggregates (read by dashboards and other services).

All keys start with a prefix (default ``rmtl``, setting ``REDIS_KEY_PREFIX``):

=================================  ======  =====================================================================
key                                type    content
=================================  ======  =====================================================================
``P:product:{product_id}``         hash    ``review_count``, ``sentiment:{negative|neutral|positive}``,
                                           ``rating_sum`` (predicted, float), ``aspect:{name}`` (mentions),
                                           ``aspect:{name}:{label}`` (mentions by the review's sentiment),
                                           ``first_seen``, ``last_seen`` (epoch seconds, event time when known)
``P:rank:review_count``            zset    product → review count (also the product index)
``P:rank:negative_share``          zset    product → negative reviews / reviews
``P:rank:positive_share``          zset    product → positive reviews / reviews
``P:rank:rating_mean``             zset    product → mean predicted rating
``P:rank:aspect:{name}``           zset    product → mentions of the aspect
``P:rank:complaints:{name}``       zset    product → mentions of the aspect in negative reviews
``P:rev:{bucket}``                 hash    the contribution of every review counted, for edits and deletes:
                                           field = 48 bits of a 64-bit fingerprint of product id + review id
                                           (the bucket: its first 16 bits, so 65,536 small hashes), value =
                                           ``{s}{rating}|{aspect bits}|{seen}|{version}|{event time}`` (s: n/u/p)
                                           or ``D|{version}|{event time}`` once retracted
``P:watermarks``                   hash    ``{topic}:{partition}`` → highest input offset already applied
``P:topic_ids``                    hash    ``{topic}`` → the Kafka topic id the watermarks belong to
``P:inflight:{topic}:{partition}`` string  the last applied batch of that partition: JSON ``{"first": offset,
                                           "records": {offset: published record}, "silent": {offset: state
                                           address}}``, reused when the batch is replayed so Kafka gets what
                                           Redis counted (and checked against it: same review, same offset)
``P:meta``                         hash    ``rebuild`` → the token of a rebuild in progress (workers wait);
                                           ``bucket_s``, ``half_life_s``: fixed by the prefix's first batch
``P:day:{product_id}:{start}``     hash    the product's counts in the bucket starting at ``start`` (event time,
                                           UTC): ``review_count``, ``sentiment:{label}``, ``rating_sum``,
                                           ``aspect:{name}``, ``aspect:{name}:negative``; expires after the
                                           retention
``P:rank:recent_negative_share``   zset    product → half-life negative share (``decay_negative / decay_n`` of
                                           the product hash, weights 2^((t − decay_t0) / half-life))
``P:rank:recent_complaints:{name}`` zset   product → half-life share of negative reviews mentioning the aspect
``P:recent:{product_id}``          list    the last reviews (JSON: id, text snippet, prediction), newest first
``P:products``                     zset    every product id, score 0: the index of prefix search (ZRANGEBYLEX)
``P:alerts``, ``P:alerts:{id}``    list    the latest alerts (JSON, as on the alerts topic), newest first
``P:alerted:{id}:{kind}``          string  the cool-down of one alert kind of one product (expires)
``P:quality:{version}:{day}``      hash    predictions, ``pred:{label}``, ``aspect:{name}``, and of reviews with
                                           stars ``n``, ``abs_err_sum``, ``star_hits``, ``sentiment_hits``,
                                           ``confusion:{from stars}:{predicted}``; ``P:quality:versions`` a set
``P:totals``                       hash    ``reviews`` (counted now), ``sentiment:{label}``, ``edits``,
                                           ``deletes``, ``resends`` (neither new nor newer), ``dead_letters`` (bad
                                           input), ``messages`` (every input message applied, whatever it was),
                                           ``alerts`` (raised)
``P:dlq:redriven``                 hash    ``{topic}:{partition}:{offset}`` of a dead letter's source → JSON
                                           ``{"state": "sending"|"sent", "at", "dlq", "to"}``: what
                                           ``reviews-mtl dlq redrive`` re-published, so each goes at most once
``P:models``                       hash    JSON ``[name, version, runtime]`` → epoch seconds of first use: the
                                           models that wrote under the prefix (``aggregates prefixes``)
=================================  ======  =====================================================================

One key outside every prefix's schema, ``REDIS_ACTIVE_PREFIX_KEY`` (default ``rmtl:active-prefix``, a string),
names the prefix the read side reads (``reviews-mtl aggregates promote``); unset, readers read ``REDIS_KEY_PREFIX``.

Aspect sentiment is the sentiment of the whole review that mentions the aspect: the model has no
per-aspect polarity head. Rankings by share or mean are read with a minimum review count.
"""

from __future__ import annotations

import hashlib

from reviews_mtl.contracts import ASPECT_NAMES

FIXED_RANKINGS: tuple[str, ...] = (
    "review_count", "negative_share", "positive_share", "rating_mean", "recent_negative_share")
ASPECT_RANKING_KINDS: tuple[str, ...] = ("aspect", "complaints", "recent_complaints")


def product_key(prefix: str, product_id: str) -> str:
    return f"{prefix}:product:{product_id}"


def rank_key(prefix: str, by: str) -> str:
    return f"{prefix}:rank:{by}"


def watermarks_key(prefix: str) -> str:
    return f"{prefix}:watermarks"


def inflight_key(prefix: str, topic: str, partition: int) -> str:
    return f"{prefix}:inflight:{topic}:{partition}"


def inflight_pattern(prefix: str, topic: str) -> str:
    """SCAN pattern of a topic's last-batch copies (topic names hold no glob characters: [a-zA-Z0-9._-])."""
    return f"{prefix}:inflight:{topic}:*"


def day_key(prefix: str, product_id: str, bucket_start: int) -> str:
    return f"{prefix}:day:{product_id}:{bucket_start}"


def recent_key(prefix: str, product_id: str) -> str:
    return f"{prefix}:recent:{product_id}"


def alerts_key(prefix: str, product_id: str | None = None) -> str:
    return f"{prefix}:alerts" if product_id is None else f"{prefix}:alerts:{product_id}"


def products_index_key(prefix: str) -> str:
    return f"{prefix}:products"


def quality_key(prefix: str, model_version: str, day_start: int) -> str:
    return f"{prefix}:quality:{model_version}:{day_start}"


def quality_versions_key(prefix: str) -> str:
    return f"{prefix}:quality:versions"


def topic_ids_key(prefix: str) -> str:
    return f"{prefix}:topic_ids"


def meta_key(prefix: str) -> str:
    return f"{prefix}:meta"


def review_state_key(prefix: str, bucket: str) -> str:
    return f"{prefix}:rev:{bucket}"


def review_state_address(product_id: str, review_id: str) -> tuple[str, str]:
    """Where a review's contribution is kept: (bucket, field) of a 64-bit fingerprint of product + review id.

    Two reviews share a fingerprint with probability about n²/2⁶⁵ (under 0.03 % for 100 million reviews); the
    later one would then read as a re-send.
    """
    digest = hashlib.blake2b(f"{product_id}\x00{review_id}".encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return digest[:4], digest[4:]


def totals_key(prefix: str) -> str:
    return f"{prefix}:totals"


def redriven_key(prefix: str) -> str:
    return f"{prefix}:dlq:redriven"


def models_key(prefix: str) -> str:
    return f"{prefix}:models"


def source_field(topic: str, partition: int, offset: int) -> str:
    return f"{topic}:{partition}:{offset}"


def partition_field(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def derived_key_patterns(prefix: str) -> tuple[str, ...]:
    """SCAN patterns of every key the workers derive from Kafka: what a rebuild deletes and recomputes (not
    ``P:meta``; not the alerts and their cool-downs, raised when they happened; not the re-drive ledger
    ``P:dlq:redriven``, which records what was sent, not what was counted)."""
    return (f"{prefix}:product:*", f"{prefix}:rank:*", f"{prefix}:rev:*", f"{prefix}:inflight:*",
            f"{prefix}:day:*", f"{prefix}:recent:*", f"{prefix}:quality:*", products_index_key(prefix),
            watermarks_key(prefix), topic_ids_key(prefix), totals_key(prefix))


def valid_rankings() -> list[str]:
    """Every value ``top --by`` accepts."""
    return [*FIXED_RANKINGS, *(f"{kind}:{name}" for kind in ASPECT_RANKING_KINDS for name in ASPECT_NAMES)]


def parse_ranking(by: str) -> str:
    """Check a ranking name; raise ``ValueError`` naming the choices when it is unknown."""
    if by in FIXED_RANKINGS:
        return by
    kind, _, name = by.partition(":")
    if kind in ASPECT_RANKING_KINDS and name in ASPECT_NAMES:
        return by
    raise ValueError(
        f"unknown ranking {by!r}: choose one of {', '.join(FIXED_RANKINGS)}, "
        f"aspect:NAME, complaints:NAME or recent_complaints:NAME with NAME in {', '.join(ASPECT_NAMES)}"
    )
