"""Fault runs: a stream of valid and bad reviews, real workers, one kind of fault, then the invariants.

The size of a run comes from ``REVIEWS_FAULT_REVIEWS`` (CI's short form: 3000) and the number of kills
from ``REVIEWS_FAULT_KILLS``; ``make soak`` runs the long form (20,000 reviews, 10 kills).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reviews_mtl.contracts import MAX_TEXT_BYTES, Retraction, Review
from reviews_mtl.kafka import read_topic
from tests.integration.consumer_harness import (
    Pipeline,
    assert_aggregates_match_recount,
    assert_trends_match_recount,
    keyed,
    make_reviews,
)

REVIEWS = int(os.environ.get("REVIEWS_FAULT_REVIEWS", "3000"))
# Event times spread over this many days, so the per-day buckets are checked too.
SPREAD_DAYS = 60.0
SPIKE_PRODUCT = "pspike"
KILLS = int(os.environ.get("REVIEWS_FAULT_KILLS", "4"))
REPORT = Path(os.environ.get("REVIEWS_FAULT_REPORT", "runs/faults.jsonl"))

_GOOD = {"review_id": "bad", "product_id": "pbad", "text": "fine"}


def bad_catalogue() -> list[tuple[bytes | None, str]]:
    """Sixteen bad inputs of thirteen kinds, each with the reason the worker must give it."""
    def j(obj: object) -> bytes:
        return json.dumps(obj).encode()

    rnd = random.Random(7)
    return [
        (b'{"review_id": "x", "product_id": ', "invalid_json"),
        (b"\xc3\x28 not utf-8", "invalid_utf8"),
        (None, "empty_value"),
        (b"42", "not_an_object"),
        (j({"product_id": "p", "text": "t"}), "missing_review_id"),
        (j({"review_id": "b1", "text": "t"}), "missing_product_id"),
        (j({"review_id": "b2", "product_id": "p"}), "missing_text"),
        (j({**_GOOD, "review_id": "b3", "text": ""}), "empty_text"),
        (j({**_GOOD, "review_id": "b4", "rating": "5 stars"}), "wrong_type"),
        (j({**_GOOD, "review_id": "b5", "text": "y" * (MAX_TEXT_BYTES + 10)}), "text_too_long"),
        (j({**_GOOD, "review_id": "b6", "schema_version": 3}), "unknown_schema_version"),
        (bytes(rnd.randrange(128, 256) for _ in range(64)), "invalid_utf8"),  # random bytes
        (b'{"review_id": "b7", "product_id": "p", "text": "bell\x07"}', "invalid_json"),  # raw control char
        (j({**_GOOD, "review_id": "b8", "text": "\u0000\u0007\u001b"}), "empty_text"),  # only control chars
        (j({**_GOOD, "review_id": "  "}), "empty_review_id"),
        (j({**_GOOD, "review_id": "b9", "timestamp": "2026-01-01T00:00:00"}), "invalid_field"),  # no timezone
    ]


def spike_reviews() -> list[Review]:
    """A product praised for a month, then panned in a burst: exactly one negative-share alert must come of it."""
    now = time.time()
    praise = [Review(review_id=f"spike-old-{i}", product_id=SPIKE_PRODUCT, timestamp=now - 30 * 86_400 + i * 3600,
                     text="Excellent quality, works perfectly, I love it. Great product.") for i in range(40)]
    panned = [Review(review_id=f"spike-new-{i}", product_id=SPIKE_PRODUCT, timestamp=now - 600 + i,
                     text="Terrible. It broke after one day, total waste of money. Avoid.") for i in range(12)]
    return praise + panned


@dataclass
class Monitor:
    """Samples the committed review count; the longest stall after a fault is the time to recover."""

    pipe: Pipeline
    samples: list[tuple[float, int]] = field(default_factory=list)
    faults: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # Redis may be the fault: no sample then
                self.samples.append((time.monotonic(), self.pipe.committed_reviews()))
            time.sleep(0.2)

    def fault(self) -> None:
        self.faults.append(time.monotonic())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def recovery_s(self) -> float:
        """For each fault: time from the fault until the count next moves; the worst of them."""
        worst = 0.0
        for t in self.faults:
            after = [(ts, n) for ts, n in self.samples if ts >= t]
            if not after:
                continue
            base = after[0][1]
            moved = next((ts for ts, n in after if n > base), None)
            if moved is not None:
                worst = max(worst, moved - t)
        return worst


@dataclass
class FaultRun:
    pipe: Pipeline
    name: str
    reviews: list[Review] = field(default_factory=list)
    bad: list[tuple[bytes | None, str]] = field(default_factory=list)
    # Every other class of input, mixed into the stream: an edit (a later version of a review), a delete, and
    # an exact re-send, each after the review it is about.
    edits: list[Review] = field(default_factory=list)
    deletes: list[Retraction] = field(default_factory=list)
    resends: int = 0
    started: float = field(default_factory=time.monotonic)

    def load(self, n: int = REVIEWS, with_bad: bool = True, products: int = 60) -> None:
        """Pre-load the input topic: n valid reviews, the bad catalogue spread through, an edit, a delete and
        a re-send."""
        self.reviews = make_reviews(n, products=products, spread_days=SPREAD_DAYS) + spike_reviews()
        values: list[tuple[bytes | None, bytes | None]] = list(keyed(self.reviews))
        if with_bad:
            self.bad = bad_catalogue()
            step = max(1, n // (len(self.bad) + 1))
            for i, (raw, _) in enumerate(self.bad):
                values.insert((i + 1) * step, (b"pbad", raw))
            edited, deleted, resent = self.reviews[n // 4], self.reviews[n // 5], self.reviews[n // 3]
            edit = edited.model_copy(update={"text": edited.text + " Update: it broke.",
                                             "timestamp": (edited.timestamp or 0) + 60})
            delete = Retraction(review_id=deleted.review_id, product_id=deleted.product_id)
            self.edits, self.deletes, self.resends = [edit], [delete], 1
            later = len(values) * 2 // 3  # well after the reviews they are about, in the same partitions
            for record in (resent, edit, delete):
                values.insert(later, (record.product_id.encode(), record.to_bytes()))
        self.pipe.produce(values)

    @property
    def expected_messages(self) -> int:
        return len(self.reviews) + len(self.bad) + len(self.edits) + len(self.deletes) + self.resends

    def processed(self) -> int:
        """Input messages applied, whatever they were (counted, edited, retracted, re-sent, dead-lettered)."""
        return self.pipe.store.totals().get("messages", 0)

    def wait_done(self, timeout_s: float = 900.0) -> None:
        self.pipe.wait_until(lambda: self.processed() >= self.expected_messages, timeout_s, "every message")
        expected_out = len(self.reviews) + len(self.edits) + len(self.deletes)
        self.pipe.wait_until(lambda: len(self.pipe.enriched_records()) >= expected_out, 120, "the committed output")

    def check(self, monitor: Monitor | None = None) -> dict[str, Any]:
        """The invariants; returns the row of the report table."""
        records = self.pipe.enriched_records()
        # Each review and each edit exactly once (by id and version time), each delete exactly once.
        expected = Counter((r.review_id, int(r.timestamp or 0)) for r in [*self.reviews, *self.edits])
        got = Counter((r["review_id"], int(r.get("timestamp") or 0)) for r in records if r.get("op") != "delete")
        retracted = Counter(r["review_id"] for r in records if r.get("op") == "delete")
        lost = sum((expected - got).values())
        duplicated = sum((got - expected).values())
        dead = self.pipe.dead_letters()
        reasons = Counter(d.reason for d in dead)
        row = {
            "fault": self.name,
            "sent": self.expected_messages,
            "enriched": len(records),
            "resent": self.resends,
            "dead_lettered": len(dead),
            "lost": lost,
            "duplicated": duplicated,
            "recover_s": round(monitor.recovery_s(), 2) if monitor else None,
            "elapsed_s": round(time.monotonic() - self.started, 1),
        }
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        with REPORT.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"\nFAULT REPORT {json.dumps(row)}")
        assert lost == 0 and duplicated == 0, row
        assert retracted == Counter(d.review_id for d in self.deletes), (retracted, row)
        assert reasons == Counter(reason for _, reason in self.bad), (reasons, row)
        totals = self.pipe.store.totals()
        assert (totals.get("resends", 0), totals.get("edits", 0), totals.get("deletes", 0)) == (
            self.resends, len(self.edits), len(self.deletes)), totals
        assert_aggregates_match_recount(self.pipe.store, records)
        assert_trends_match_recount(self.pipe.store, records, days=int(SPREAD_DAYS) + 2)
        # Every alert decided is on the alerts topic exactly once; the panned product raised its one.
        alerts = [json.loads(m.value() or b"") for m in read_topic(self.pipe.kafka, self.pipe.alerts, timeout_s=30)]
        keys = Counter((a["product_id"], a["kind"], a["at"]) for a in alerts)
        assert max(keys.values(), default=1) == 1 and len(alerts) == totals.get("alerts", 0), (keys, totals)
        assert [a["kind"] for a in alerts if a["product_id"] == SPIKE_PRODUCT].count("negative_share") == 1, alerts
        # Watermarks reach the last offset of every input partition. (Read, not asked: Tansu 0.6 answers
        # ListOffsets for the high watermark with 1.)
        last: dict[int, int] = {}
        for m in read_topic(self.pipe.kafka, self.pipe.input, isolation="read_uncommitted", timeout_s=60):
            partition, offset = m.partition(), m.offset()
            assert partition is not None and offset is not None
            last[partition] = max(last.get(partition, -1), offset)
        marks = self.pipe.store.watermarks()
        assert {p: marks.get((self.pipe.input, p)) for p in last} == last, (last, marks)
        return row
