"""What ``reviews-mtl dlq redrive`` already re-published, by the source coordinates of each original.

One Redis hash (``P:dlq:redriven``, see :mod:`reviews_mtl.aggregates.keys`). A field is claimed with HSETNX
*before* the original is produced, so two concurrent re-drives never both send it and a crash between the
claim and the delivery leaves it claimed: at most once, never twice. A delivery that is known to have failed
releases its claim, so the next re-drive tries again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, cast

import redis

from reviews_mtl.aggregates.keys import redriven_key


class RedriveLedger:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.key = redriven_key(prefix)

    def records(self, sources: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The re-drive record of each of ``sources`` that was re-driven (or claimed by one that did not finish)."""
        fields = list(dict.fromkeys(sources))
        if not fields:
            return {}
        found = cast(list[bytes | None], self.client.hmget(self.key, fields))
        return {f: json.loads(v) for f, v in zip(fields, found, strict=True) if v is not None}

    def already(self, sources: Iterable[str]) -> set[str]:
        return set(self.records(sources))

    def claim(self, source: str, dlq_where: str) -> bool:
        """Claim ``source`` for one re-drive; False when another re-drive already has it."""
        doc = {"state": "sending", "at": time.time(), "dlq": dlq_where}
        return bool(self.client.hsetnx(self.key, source, json.dumps(doc)))

    def confirm(self, source: str, dlq_where: str, to: str) -> None:
        doc = {"state": "sent", "at": time.time(), "dlq": dlq_where, "to": to}
        self.client.hset(self.key, source, json.dumps(doc))

    def release(self, source: str) -> None:
        self.client.hdel(self.key, source)
