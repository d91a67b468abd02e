"""Exceptions of the producer package, all rooted at :class:`ProducerError`.

ProducerError
├── InputError            a file that cannot be read at all (missing, unknown format, corrupt Parquet)
├── InvalidRecordError    a row breaks the input contract and ``on_invalid="fail"`` was asked for
└── DeliveryError         the broker did not acknowledge every record (raised only on request)
"""

from __future__ import annotations

from collections.abc import Sequence

from producer.records import InvalidRecord


class ProducerError(Exception):
    """Root of every error this package raises on purpose."""


class InputError(ProducerError):
    """An input file cannot be read (as opposed to one bad row in it)."""


class InvalidRecordError(ProducerError):
    """One or more rows break the input contract while invalid rows are fatal."""

    def __init__(self, invalid: Sequence[InvalidRecord], total_invalid: int | None = None) -> None:
        self.invalid = list(invalid)
        self.total_invalid = total_invalid if total_invalid is not None else len(self.invalid)
        shown = "; ".join(str(r) for r in self.invalid[:5])
        more = f" (and {self.total_invalid - 5} more)" if self.total_invalid > 5 else ""
        super().__init__(f"{self.total_invalid} invalid record(s), nothing sent: {shown}{more}")


class DeliveryError(ProducerError):
    """Some records were not acknowledged by the broker."""
