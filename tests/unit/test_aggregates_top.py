"""A ranking query does bounded work however many products fall short of ``min_reviews``."""

from __future__ import annotations

from typing import Any

from reviews_mtl.aggregates.store import TOP_MAX_SCAN, AggregateStore


class ManyThinProducts:
    """A Redis stand-in: 1,000,000 ranked products, each with a single review; counts how many rows were read."""

    def __init__(self) -> None:
        self.rows_read = 0

    def register_script(self, source: str) -> object:
        return object()

    def zrevrange(self, key: str, start: int, end: int, withscores: bool = False) -> list[tuple[bytes, float]]:
        rows = [(f"p{i}".encode(), 1.0) for i in range(start, min(end + 1, 1_000_000))]
        self.rows_read += len(rows)
        return rows

    def pipeline(self, transaction: bool = False) -> Any:
        class Pipe:
            calls = 0

            def zscore(self, key: str, member: bytes) -> None:
                self.calls += 1

            def execute(self) -> list[float]:
                return [1.0] * self.calls

        return Pipe()


def test_top_stops_after_a_bounded_scan_when_few_products_qualify() -> None:
    client = ManyThinProducts()
    store = AggregateStore(client, prefix="t")  # type: ignore[arg-type]
    assert store.top("negative_share", n=10, min_reviews=5) == []
    assert client.rows_read <= TOP_MAX_SCAN
