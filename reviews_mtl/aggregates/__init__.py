"""Per-product aggregates in Redis: the key schema (``keys``), the store (``store``), and the read side
(``cli`` for ``reviews-mtl aggregates``, ``api`` for the HTTP read API and its page)."""

from reviews_mtl.aggregates.store import (
    AggregateStore,
    AppliedRecord,
    ApplyResult,
    LastAppliedBatch,
    PartitionBatch,
    ProductAggregate,
    RankedProduct,
    connect,
)

__all__ = [
    "AggregateStore",
    "AppliedRecord",
    "ApplyResult",
    "LastAppliedBatch",
    "PartitionBatch",
    "ProductAggregate",
    "RankedProduct",
    "connect",
]
