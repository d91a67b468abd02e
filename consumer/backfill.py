"""Re-score the input topic with another model into a new Redis key prefix (``reviews-mtl backfill``).

A backfill is a worker, built by :func:`consumer.app.build_worker` like any other (the same micro-batches, Redis
script, watermarks and Kafka transactions: exactly once), with other settings (:func:`plan`):

- its own consumer group ``{group}.backfill.{prefix}``, so it reads the whole topic while the live group goes on;
- the new key prefix, so the live aggregates are never touched (``aggregates promote`` switches the readers);
- its own enriched, dead-letter and alert topics ``{enriched}.{prefix}``, ``{dlq}.{prefix}`` and
  ``{alerts}.{prefix}``: the history re-scored by the new model, no second copy of old dead letters on the live DLQ,
  and no alert of an old burst on the live alerts topic.

Where it starts (:func:`commit_start_offsets`): a group with committed offsets resumes from them; a new one gets
the beginning of each partition, or with ``--since`` the first offset at or after that time (offsets-for-times),
committed before the worker joins. :class:`Progress` runs between batches: it prints progress and lag, and (unless
``--follow``) stops the worker once every partition is past the end offsets taken at start. :class:`RateBound`
keeps it under ``--rate`` reviews/s, so it can run beside the live workers without starving them.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from consumer.worker import Worker
from reviews_mtl.aggregates.prefixes import check_prefix, declare_start
from reviews_mtl.aggregates.store import AggregateStore
from reviews_mtl.kafka import make_consumer
from reviews_mtl.kafka.reading import high_watermarks, topic_partitions
from reviews_mtl.settings import BackfillSettings, ConsumerSettings, TopicSettings

log = logging.getLogger(__name__)


class BackfillError(Exception):
    """A backfill that cannot start (bad options, a topic that cannot be read)."""


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    model_dir: Path
    prefix: str
    group_id: str
    input_topic: str
    enriched_topic: str
    dlq_topic: str
    alerts_topic: str
    since_ms: int | None  # None: from the beginning
    rate: float | None
    follow: bool


def plan(settings: BackfillSettings, consumer: ConsumerSettings, topics: TopicSettings,
         since_ms: int | None) -> BackfillPlan:
    if settings.model_dir is None:
        raise BackfillError("--model DIR is required (env REVIEWS_BACKFILL_MODEL_DIR)")
    if settings.key_prefix is None:
        raise BackfillError("--key-prefix NEW is required (env REVIEWS_BACKFILL_KEY_PREFIX)")
    prefix = check_prefix(settings.key_prefix)
    return BackfillPlan(
        model_dir=settings.model_dir,
        prefix=prefix,
        group_id=settings.group_id or f"{consumer.group_id}.backfill.{prefix}",
        input_topic=topics.input,
        enriched_topic=settings.enriched_topic or f"{topics.enriched}.{prefix}",
        dlq_topic=settings.dlq_topic or f"{topics.dlq}.{prefix}",
        # History replayed under a new model may jump where the live stream did: those alerts are the new prefix's.
        alerts_topic=f"{topics.alerts}.{prefix}",
        since_ms=since_ms,
        rate=settings.rate,
        follow=settings.follow,
    )


@dataclass(frozen=True, slots=True)
class StartPoint:
    """Per partition: where the backfill (re)starts and the end it must reach (the high watermark at start)."""

    starts: dict[int, int]
    ends: dict[int, int]
    resumed: list[int]  # partitions the group had offsets for already

    @property
    def total(self) -> int:
        return sum(max(0, self.ends[p] - self.starts[p]) for p in self.starts)


def commit_start_offsets(kafka: Any, group_id: str, topic: str, since_ms: int | None, store: AggregateStore,
                         timeout_s: float = 30.0) -> StartPoint:
    """Commit the start offsets of ``group_id`` for the partitions it has none for; return where each starts.

    A start past the beginning (``--since``, or records gone with retention) is first declared in the new prefix
    (:func:`~reviews_mtl.aggregates.prefixes.declare_start`): the worker refuses a committed offset Redis has not
    caught up with, and here that gap is on purpose.
    """
    admin = make_consumer(kafka, group_id, **{"enable.partition.eof": False})
    try:
        partitions = topic_partitions(admin, topic, timeout_s)
        ends = high_watermarks(admin, topic, partitions, timeout_s)
        committed = {tp.partition: tp.offset for tp in admin.committed(
            [TopicPartition(topic, p) for p in partitions], timeout=timeout_s)}
        resumed = [p for p in partitions if committed.get(p, -1) >= 0]
        fresh = [p for p in partitions if p not in resumed]
        starts = {p: committed[p] for p in resumed}
        starts.update(_fresh_starts(admin, topic, fresh, since_ms, ends, timeout_s))
        if fresh:
            declare_start(store.client, store.prefix, topic, {p: starts[p] for p in fresh})
            admin.commit(offsets=[TopicPartition(topic, p, starts[p]) for p in fresh], asynchronous=False)
        return StartPoint(starts, ends, resumed)
    finally:
        admin.close()


def _fresh_starts(consumer: Consumer, topic: str, partitions: list[int], since_ms: int | None,
                  ends: dict[int, int], timeout_s: float) -> dict[int, int]:
    if not partitions:
        return {}
    if since_ms is None:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s, cached=False)[0]
                for p in partitions}
    found = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions], timeout=timeout_s)
    # No record at or after the time: start at the end (nothing of that partition to re-score yet).
    return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}


class RateBound:
    """At most ``rate`` messages per second on average since the first batch: sleeps between batches (in short
    steps, so a stop request is honoured at once)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, stopping: Callable[[], bool] = lambda: False) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.stopping = stopping
        self.started: float | None = None
        self.count = 0
        self.slept = 0.0

    def __call__(self, handled: int) -> None:
        if self.started is None:
            if not handled:
                return
            self.started = self.clock()
        self.count += handled
        while not self.stopping():
            ahead = self.count / self.rate - (self.clock() - self.started)
            if ahead < 0.001:  # below a millisecond: not worth a sleep (and float noise never reaches 0)
                return
            step = min(ahead, 0.5)
            self.sleep(step)
            self.slept += step


class Progress:
    """Between batches: progress and lag every ``interval_s``, and the end of a finite backfill.

    Done means every partition of the input topic is assigned to this worker and its position (the next offset
    it will read) is at or past the end taken at start; between batches everything before the position is
    committed (a failed batch rewinds the position first).
    """

    def __init__(self, plan: BackfillPlan, start: StartPoint, interval_s: float,
                 clock: Callable[[], float] = time.monotonic, bar: bool | None = None) -> None:
        self.plan = plan
        self.start = start
        self.interval_s = interval_s
        self.clock = clock
        self.worker: Worker | None = None
        self.caught_up = not start.total  # nothing to do: done at once
        self.done_at: float | None = None
        self.first_batch_at: float | None = None  # when the first batch was handled (after the model load and join)
        self.positions: dict[int, int] = dict(start.starts)
        self.lag: int | None = None
        self.began = clock()
        self._last = self.began
        self._bar: Any = None
        if bar if bar is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=start.total, unit="review", desc=f"backfill {plan.prefix}", file=sys.stderr)

    def attach(self, worker: Worker) -> None:
        self.worker = worker

    @property
    def handled(self) -> int:
        return sum(max(0, min(self.positions[p], self.start.ends[p]) - self.start.starts[p]) for p in self.positions)

    def __call__(self, handled: int) -> None:
        worker = self.worker
        if worker is None:
            return
        now = self.clock()
        if handled and self.first_batch_at is None:
            self.first_batch_at = now
        due = now - self._last >= self.interval_s
        if not (handled or due) or not worker.assigned:
            return
        mine = sorted(p for t, p in worker.assigned if t == self.plan.input_topic)
        for tp in worker.consumer.position([TopicPartition(self.plan.input_topic, p) for p in mine]):
            if tp.offset >= 0:
                self.positions[tp.partition] = max(tp.offset, self.positions.get(tp.partition, 0))
        if self._bar is not None:
            self._bar.n = self.handled
            self._bar.refresh()
        every = set(self.start.starts)
        if not self.caught_up and set(mine) >= every and all(
                self.positions[p] >= self.start.ends[p] for p in every):
            self.caught_up = True
            self.done_at = now
            log.info("backfill %s caught up with the end offsets taken at start: %d records in %.1fs",
                     self.plan.prefix, self.start.total, now - self.began)
            if not self.plan.follow:
                worker.request_stop()
        if due:
            self._last = now
            self._report(worker, mine, now)

    def _report(self, worker: Worker, mine: list[int], now: float) -> None:
        try:
            highs = high_watermarks(worker.consumer, self.plan.input_topic, mine, 5.0)
        except Exception as exc:  # only the report: the next one tries again
            log.debug("no high watermarks for the progress line: %s", exc)
            highs = {}
        self.lag = sum(max(0, highs[p] - self.positions.get(p, 0)) for p in highs) if highs else self.lag
        total = self.start.total
        share = f"{100.0 * self.handled / total:.1f} %" if total else "-"
        rate = self.handled / max(1e-9, now - self.began)
        line = (f"backfill {self.plan.prefix}: {self.handled:,}/{total:,} records ({share}), {rate:.0f}/s, "
                f"lag {self.lag if self.lag is not None else '?'}")
        if self._bar is not None:
            self._bar.set_postfix_str(f"lag {self.lag}")
        else:
            log.info("%s", line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
