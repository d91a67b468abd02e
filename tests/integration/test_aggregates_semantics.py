"""The aggregate script's rules against a real Redis: edits replace, deletes retract, re-sends count nowhere, the
ordering rule is the contract's, and a batch Redis cannot apply safely is refused whole."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from typing import Any

import pytest
import redis

from consumer.processing import BatchProcessor, InMessage
from reviews_mtl.aggregates import keys
from reviews_mtl.aggregates.store import AggregateStore, AppliedRecord, PartitionBatch
from reviews_mtl.contracts import supersedes
from tests.integration.consumer_harness import assert_aggregates_match_recount, current_reviews
from tests.integration.test_consumer_processing import FakePredictor

pytestmark = pytest.mark.integration

T0 = 1_700_000_000


@pytest.fixture
def store(redis_url: str) -> AggregateStore:
    return AggregateStore(redis.Redis.from_url(redis_url), prefix=f"t-{uuid.uuid4().hex[:8]}")


def _record(offset: int, *, version: int | None = None, event: float | None = None, delete: bool = False,
            sentiment: str = "positive", review_id: str = "r1") -> AppliedRecord:
    body = {"review_id": review_id, "product_id": "P", "offset": offset}
    return AppliedRecord(offset=offset, review_id=review_id, product_id="P", sentiment="" if delete else sentiment,
                         rating=4.0, aspects=() if delete else ("price",), seen_at=event or T0,
                         enriched=json.dumps(body).encode(), version=version, event_time=event, delete=delete)


VERSIONS = [None, 1, 2]
TIMES = [None, T0, T0 + 60]


@pytest.mark.parametrize("old", [(v, t) for v in VERSIONS for t in TIMES])
def test_the_script_orders_a_message_as_the_contract_does(store: AggregateStore, old: tuple[Any, Any]) -> None:
    """Every pair of (version, event time) on both sides: the script takes an upsert exactly when
    ``supersedes`` says so, and a delete exactly when the counted review is not newer than it."""
    offset = 0
    for new in [(v, t) for v in VERSIONS for t in TIMES]:
        for delete in (False, True):
            rid = f"r{offset}"
            store.apply_batch([PartitionBatch("in", 0, first=offset, records=[
                _record(offset, version=old[0], event=old[1], sentiment="negative", review_id=rid)])])
            result = store.apply_batch([PartitionBatch("in", 0, first=offset + 1, records=[
                _record(offset + 1, version=new[0], event=new[1], delete=delete, review_id=rid)])])
            offset += 2
            if delete:
                expected = not supersedes(old[0], old[1], new[0], new[1])
                assert (result.deletes == 1) is expected, (old, new, "delete")
            else:
                expected = supersedes(new[0], new[1], old[0], old[1])
                assert (result.edits == 1) is expected, (old, new, "upsert")
            assert (result.silent != {}) is (not expected)


def test_edits_deletes_and_resends_keep_every_aggregate_equal_to_a_recount(store: AggregateStore) -> None:
    """A random stream of new reviews, edits, stale versions, deletes and re-sends, some batches replayed: the
    aggregates always equal a recount of what was published, and what was published is what was counted."""
    rnd = random.Random(13)
    proc = BatchProcessor(FakePredictor(), store)
    versions: dict[str, int] = {}
    published: list[dict[str, Any]] = []
    offset = 0
    for _ in range(12):
        batch = []
        for _ in range(rnd.randrange(5, 30)):
            rid = f"r{rnd.randrange(40)}"
            pid = f"P{int(rid[1:]) % 5}"
            roll = rnd.random()
            if roll < 0.15 and rid in versions:
                obj: dict[str, Any] = {"op": "delete", "review_id": rid, "product_id": pid}
            else:
                version = versions.get(rid, 0) + (1 if roll < 0.8 else -1)
                versions[rid] = max(versions.get(rid, 0), version)
                text = rnd.choice(["bad price", "fine quality", "bad shipping, fine price", "great"])
                obj = {"review_id": rid, "product_id": pid, "text": text, "version": max(version, 0),
                       "timestamp": T0 + offset}
            batch.append(InMessage("in", 0, offset, pid.encode(), json.dumps(obj).encode()))
            offset += 1
        out = proc.process(batch)
        if rnd.random() < 0.3:  # the transaction aborted: the batch comes again and must publish the same
            again = proc.process(batch)
            assert [r.value for r in again.enriched] == [r.value for r in out.enriched]
        published += [json.loads(r.value or b"") for r in out.enriched]
    assert_aggregates_match_recount(store, published)
    totals = store.totals()
    assert totals["reviews"] == len(current_reviews(published)) == sum(p.review_count for p in store.products())
    assert totals.get("resends", 0) > 0 and any(r.get("op") == "delete" for r in published)
    assert any(r.get("version", 0) > 1 for r in published)


def test_a_product_whose_reviews_are_all_retracted_leaves_the_aggregates(store: AggregateStore) -> None:
    proc = BatchProcessor(FakePredictor(), store)
    proc.process([InMessage("in", 0, 0, b"P", json.dumps({"review_id": "a", "product_id": "P",
                                                           "text": "bad price"}).encode())])
    assert store.product("P") is not None and store.top("complaints:price", min_reviews=1)[0].product_id == "P"
    proc.process([InMessage("in", 0, 1, b"P", json.dumps({"op": "delete", "review_id": "a",
                                                           "product_id": "P"}).encode())])
    assert store.product("P") is None and store.product_count() == 0
    assert store.top("complaints:price", min_reviews=1) == [] and store.top("negative_share", min_reviews=1) == []


def test_a_batch_redis_cannot_apply_safely_is_refused_whole(store: AggregateStore) -> None:
    proc = BatchProcessor(FakePredictor(), store)
    first = [InMessage("in", p, 0, b"P", json.dumps({"review_id": f"r{p}", "product_id": "P",
                                                      "text": "fine"}).encode()) for p in (0, 1)]
    proc.process(first, topic_ids={"in": "id-A"})
    before = store.product("P")
    later = [InMessage("in", p, 5, b"P", json.dumps({"review_id": f"s{p}", "product_id": "P",
                                                      "text": "fine"}).encode()) for p in (0, 1)]
    # Kafka committed partition 1 up to offset 5, Redis holds it up to 0 (a restored snapshot, say).
    out = proc.process(later, starts={("in", 0): 1, ("in", 1): 5}, topic_ids={"in": "id-A"})
    assert [(v.partition, v.reason) for v in out.violations] == [(1, "redis_behind")]
    assert store.product("P") == before and store.watermarks() == {("in", 0): 0, ("in", 1): 0}
    # The topic was recreated: a new id.
    out = proc.process(later[:1], starts={("in", 0): 1}, topic_ids={"in": "id-B"})
    assert [(v.partition, v.reason) for v in out.violations] == [(0, "topic_changed")]
    # A rebuild holds the lock: every other writer is refused, the rebuild's own batches go through.
    store.client.hset(keys.meta_key(store.prefix), "rebuild", "token-1")
    assert [v.reason for v in proc.check([("in", 0)], {}, {})] == ["rebuild"]
    applied = store.apply_batch([PartitionBatch("in", 0, first=1, records=[_record(1, review_id="z")])],
                                lock="token-1")
    assert applied.applied == 1 and applied.violations == ()
    store.client.hdel(keys.meta_key(store.prefix), "rebuild")
    assert proc.check([("in", 0), ("in", 1)], {("in", 0): 2, ("in", 1): 1}, {"in": "id-A"}) == []


def test_review_state_stays_compact(store: AggregateStore) -> None:
    """Each counted review costs one small hash field in one of 65,536 buckets (the bound in keys.py)."""
    proc = BatchProcessor(FakePredictor(), store)
    proc.process([InMessage("in", 0, i, b"P", json.dumps({"review_id": f"r{i}", "product_id": f"P{i % 7}",
                                                           "text": "fine", "version": 3}).encode())
                  for i in range(200)])
    buckets = list(store.client.scan_iter(f"{store.prefix}:rev:*"))
    fields = Counter(len(store.client.hkeys(b)) for b in buckets)
    assert sum(n * c for n, c in fields.items()) == 200
    value = store.client.hget(buckets[0], store.client.hkeys(buckets[0])[0])
    assert value is not None and len(value) <= 32, value
