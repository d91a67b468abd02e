"""The two kinds of row a reader yields: a valid review (or a delete), or an invalid row reported with its file and
line.

A module of its own so that both the readers and the errors (:class:`~producer.errors.InvalidRecordError`
carries invalid rows) stand on it, without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from reviews_mtl.contracts import DecodeReason, Retraction, Review


@dataclass(frozen=True, slots=True)
class ValidRecord:
    """A row that satisfies the input contract: a review, or a delete of one (``{"op": "delete", ...}``)."""

    source: str
    line: int
    review: Review | Retraction


@dataclass(frozen=True, slots=True)
class InvalidRecord:
    """A row that breaks the input contract: never sent, always reported."""

    source: str
    line: int
    reason: DecodeReason
    detail: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason.value}: {self.detail}"

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source, "line": self.line, "reason": self.reason.value, "detail": self.detail}


Record = ValidRecord | InvalidRecord
