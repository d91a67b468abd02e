"""Which dead letters a ``reviews-mtl dlq`` command works on: by reason, by time, at most N (oldest first)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class Selection:
    """``reasons`` empty: every reason; ``since_ms``: DLQ record time (epoch ms) at or after; ``limit``: at most."""

    reasons: frozenset[str] = frozenset()
    since_ms: int | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")

    def wants_reason(self, reason: str) -> bool:
        return not self.reasons or reason in self.reasons


def parse_since(text: str, now: float | None = None) -> int:
    """Epoch milliseconds from ``30m``/``2h``/``7d`` ago, an ISO-8601 time with a timezone, or epoch seconds.

    Raises ``ValueError`` with the accepted forms when ``text`` is none of them.
    """
    value = text.strip()
    clock = time.time() if now is None else now
    match = _DURATION.match(value)
    if match:
        return int((clock - float(match.group(1)) * _UNIT_S[match.group(2)]) * 1000)
    try:
        return int(float(value) * 1000)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValueError(
            f"--since {text!r}: give a duration ago (30m, 2h, 7d), an ISO-8601 time with a timezone "
            "(2026-12-01T08:00:00Z) or epoch seconds"
        )
    return int(parsed.timestamp() * 1000)
