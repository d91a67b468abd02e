"""Key prefixes as namespaces of aggregates: which one the read side reads, what each holds, and dropping one.

Start here: :class:`Prefixes`. Writers (workers, a backfill) always write under their own ``REDIS_KEY_PREFIX``.
Readers (the API, the page, the CLI) read the prefix named by one pointer key (``REDIS_ACTIVE_PREFIX_KEY``),
else ``REDIS_KEY_PREFIX``: :meth:`Prefixes.promote` switches every reader in one ``SET``, and the API resolves
the pointer once per request, so a request never reads half of one prefix and half of another.

Each writer also notes the models it writes with in ``P:models`` (:func:`record_model`), which
``reviews-mtl aggregates prefixes`` lists beside the sizes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from reviews_mtl.aggregates import keys
from reviews_mtl.settings import RedisSettings

# A prefix made by `backfill --key-prefix` or named by `promote`/`drop`: no ':' (one prefix is never a key of
# another) and no glob characters (dropping one SCANs for ``prefix:*``).
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# The keys by which a prefix is found: every writer writes its watermarks, and notes its models.
_MARKERS = (":watermarks", ":models")


class PrefixError(ValueError):
    """A prefix that cannot be promoted or dropped (unknown, malformed, or the active one)."""


def check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise PrefixError(f"key prefix {prefix!r}: use 1-64 letters, digits, '_', '.' or '-' (no ':'), "
                          "starting with a letter or digit")
    return prefix


@dataclass(frozen=True, slots=True)
class ModelUse:
    name: str
    version: str
    runtime: str
    first_used: float


@dataclass(frozen=True, slots=True)
class PrefixInfo:
    prefix: str
    active: bool
    products: int
    reviews: int
    dead_letters: int
    partitions: int  # input partitions with a watermark
    models: list[ModelUse] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix, "active": self.active, "products": self.products, "reviews": self.reviews,
            "dead_letters": self.dead_letters, "partitions": self.partitions,
            "models": [{"name": m.name, "version": m.version, "runtime": m.runtime, "first_used": m.first_used}
                       for m in self.models],
        }


def record_model(client: redis.Redis, prefix: str, name: str, version: str, runtime: str,
                 now: float | None = None) -> None:
    """Note that a model writes under ``prefix`` (first use kept): a writer calls it at start and on each switch."""
    field_name = json.dumps([name, version, runtime], separators=(",", ":"))
    client.hsetnx(keys.models_key(prefix), field_name, repr(time.time() if now is None else now))


def declare_start(client: redis.Redis, prefix: str, topic: str, starts: Mapping[int, int]) -> None:
    """A prefix that counts ``topic`` from ``starts`` on (a backfill ``--since``, or a partition whose oldest records
    are gone): its watermark is set just below each start, as if everything before had been applied, so the
    worker's check that Redis holds everything Kafka committed (a committed offset past watermark + 1 is Redis
    behind) holds. Call it before committing those offsets. Refuses (:class:`PrefixError`) a partition the prefix
    already holds at another offset: its aggregates belong to another start."""
    key = keys.watermarks_key(prefix)
    for partition, start in sorted(starts.items()):
        if start <= 0:
            continue
        field_name = keys.partition_field(topic, partition)
        if not client.hsetnx(key, field_name, start - 1):
            held = int(cast(bytes, client.hget(key, field_name)))
            if held != start - 1:
                raise PrefixError(f"prefix {prefix!r} already holds {field_name} up to offset {held}, not {start - 1}: "
                                  "drop it, or pick a new prefix")


def models_of(client: redis.Redis, prefix: str) -> list[ModelUse]:
    raw = cast(dict[bytes, bytes], client.hgetall(keys.models_key(prefix)))
    out: list[ModelUse] = []
    for k, v in raw.items():
        try:
            name, version, runtime = json.loads(k)
            out.append(ModelUse(str(name), str(version), str(runtime), float(v)))
        except (ValueError, TypeError):
            continue  # not ours: ignored
    return sorted(out, key=lambda m: m.first_used)


class Prefixes:
    """The prefixes of one Redis database, and the pointer the read side follows."""

    def __init__(self, client: redis.Redis, default_prefix: str, pointer_key: str) -> None:
        self.client = client
        self.default_prefix = default_prefix
        self.pointer_key = pointer_key

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: RedisSettings) -> Prefixes:
        return cls(client, settings.key_prefix, settings.active_prefix_key)

    def active(self) -> str:
        """The prefix readers read now: the pointer's, else the configured one."""
        raw = cast(bytes | None, self.client.get(self.pointer_key))
        return raw.decode("utf-8") if raw else self.default_prefix

    def exists(self, prefix: str) -> bool:
        return bool(self.client.exists(*(prefix + marker for marker in _MARKERS)))

    def promote(self, prefix: str, *, force: bool = False) -> str:
        """Point every reader at ``prefix`` in one write; returns the prefix they read before."""
        check_prefix(prefix)
        if not force and not self.exists(prefix):
            raise PrefixError(f"no aggregates under prefix {prefix!r} (no {prefix}:watermarks): backfill it first, "
                              "or pass --force")
        previous = cast(bytes | None, self.client.set(self.pointer_key, prefix, get=True))
        return previous.decode("utf-8") if previous else self.default_prefix

    def names(self) -> list[str]:
        """Every prefix with a writer's marker key, the active and the configured one."""
        found = {self.active(), self.default_prefix}
        for marker in _MARKERS:
            for key in self.client.scan_iter(match=f"*{marker}", count=1000):
                name = key.decode("utf-8", "replace")[: -len(marker)]
                if name:
                    found.add(name)
        return sorted(found)

    def info(self, prefix: str, active: str | None = None) -> PrefixInfo:
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(keys.rank_key(prefix, "review_count"))
        pipe.hgetall(keys.totals_key(prefix))
        pipe.hlen(keys.watermarks_key(prefix))
        products, totals, partitions = pipe.execute()
        totals = {k.decode(): int(v) for k, v in totals.items()}
        return PrefixInfo(prefix, prefix == (active or self.active()), int(products), totals.get("reviews", 0),
                          totals.get("dead_letters", 0), int(partitions), models_of(self.client, prefix))

    def list(self) -> list[PrefixInfo]:
        active = self.active()
        return [self.info(name, active) for name in self.names()]

    def drop(self, prefix: str, batch: int = 500) -> int:
        """Delete the keys of ``prefix`` (UNLINK, in batches); refuses the active prefix. Returns the keys deleted.

        Kept: the pointer key itself (it may sit under the prefix, as ``rmtl:active-prefix`` does) and the dead-letter
        re-drive ledger ``P:dlq:redriven``, which records what went back to the input topic whatever model counts it.
        """
        check_prefix(prefix)
        if prefix == self.active():
            raise PrefixError(f"prefix {prefix!r} is the one readers read: promote another one first")
        deleted = 0
        chunk: list[bytes] = []
        for key in self._keys_of(prefix):
            chunk.append(key)
            if len(chunk) >= batch:
                deleted += int(self.client.unlink(*chunk))
                chunk = []
        if chunk:
            deleted += int(self.client.unlink(*chunk))
        return deleted

    def _keys_of(self, prefix: str) -> Iterator[bytes]:
        # A prefix passes check_prefix, so it holds no glob character, and no other prefix's key starts with
        # "prefix:" unless that prefix has a ':' of its own (an older, unchecked one): those are left alone.
        nested = [other.encode() + b":" for other in self.names() if other.startswith(prefix + ":")]
        kept = {self.pointer_key.encode(), keys.redriven_key(prefix).encode()}
        for key in self.client.scan_iter(match=f"{prefix}:*", count=1000):
            if key not in kept and not any(key.startswith(n) for n in nested):
                yield key
