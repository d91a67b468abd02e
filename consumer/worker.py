"""The worker loop: consume a micro-batch, process it, apply it to Redis, publish it, commit. Repeat.

Per batch, in order:
  1. check newly assigned partitions: Redis must hold everything Kafka committed for them, for this incarnation
     of the topic (else the partition is set aside: paused, not ready, a metric and one log line, re-checked
     every ``integrity_recheck_s`` until an operator repairs it with ``reviews-mtl aggregates rebuild``);
  2. collect up to ``batch_max_records`` messages or ``batch_max_wait_ms`` (``MicroBatcher``), dropping those of
     partitions revoked, re-assigned or not yet checked meanwhile (they are read again from the committed offset);
  3. decode, predict, and apply the aggregates to Redis in one idempotent script (``BatchProcessor``), which
     re-checks the same conditions atomically;
  4. publish enriched records + dead letters and commit the offsets (one transaction, ``KafkaOutput``);
  5. on an aborted transaction, seek back to the batch's first offsets: the replay re-publishes from
     Redis's copy and counts nothing twice.
While Redis or the broker is down the worker pauses its partitions and keeps polling (so the group keeps
it and callbacks run) with capped exponential backoff; it never commits past unapplied work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from consumer.batcher import AdaptiveBatcher, AdaptivePolicy, MicroBatcher
from consumer.live_quality import LiveQuality
from consumer.metrics import WorkerMetrics
from consumer.output import KafkaOutput, OutputError
from consumer.processing import BatchOutput, BatchProcessor, InMessage, PartitionKey, Predictor
from reviews_mtl.aggregates.store import Violation

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


@dataclass(frozen=True)
class WorkerOptions:
    input_topic: str
    batch_max_records: int
    batch_max_wait_s: float
    drain_timeout_s: float
    batch_idle_close_s: float | None = None
    # The same batch failing this many times in a row marks the worker not ready (the circuit breaker).
    stuck_after_failures: int = 5
    # How often a partition set aside for its integrity is checked again (after a rebuild it is taken back).
    integrity_recheck_s: float = 5.0
    # Batch sizes and waits from a p99 target and what batches cost (consumer.batcher.AdaptiveBatcher); None: fixed.
    adaptive: AdaptivePolicy | None = None

# What an operator does about a partition set aside, by reason.
_REPAIR = {
    "redis_behind": "Redis lost work Kafka committed: repair with `reviews-mtl aggregates rebuild`",
    "topic_changed": "the topic was recreated: accept it with `reviews-mtl aggregates reset-topic TOPIC` "
                     "(or rebuild), after checking",
    "identity": "Redis's copy of the last batch is of other reviews (another topic or cluster?): "
                "rebuild, or reset-topic after checking",
    "rebuild": "a rebuild is running: the partition is taken back when it ends",
}


class Processes(Protocol):
    """What the loop needs of a processor: ``BatchProcessor``, or one wrapped (``consumer.shadow``)."""

    @property
    def predictor(self) -> Predictor: ...

    def process(self, messages: Sequence[InMessage], starts: Mapping[PartitionKey, int] | None = None,
                topic_ids: Mapping[str, str] | None = None) -> BatchOutput: ...

    def check(self, partitions: Sequence[PartitionKey], starts: Mapping[PartitionKey, int],
              topic_ids: Mapping[str, str]) -> list[Violation]: ...


# Called after every loop turn with the number of messages it handled (0 when the poll was empty): the one
# place between two batches (hot reload, a backfill's rate bound and progress).
BetweenBatches = Callable[[int], None]


class Worker:
    def __init__(
        self,
        consumer: Consumer,
        output: KafkaOutput,
        processor: BatchProcessor | Processes,
        metrics: WorkerMetrics,
        options: WorkerOptions,
        clock: Callable[[], float] = time.monotonic,
        topic_id_of: Callable[[str], str] = lambda topic: "",
        prepare: Callable[[], None] | None = None,
        live_quality: LiveQuality | None = None,
        between_batches: BetweenBatches | None = None,
    ) -> None:
        self.consumer = consumer
        self.output = output
        self.processor = processor
        self.metrics = metrics
        self.options = options
        self.clock = clock
        self.between_batches = between_batches
        self.batcher = AdaptiveBatcher(consumer, options.adaptive, clock) if options.adaptive is not None else \
            MicroBatcher(consumer, options.batch_max_records, options.batch_max_wait_s, clock,
                         idle_close_s=options.batch_idle_close_s)
        self.assigned: set[tuple[str, int]] = set()
        # Bumped on every assignment of a partition: messages in hand from an older epoch were fetched
        # before a revoke, and librdkafka restarts a re-assigned partition at its committed offset.
        self.epochs: dict[tuple[str, int], int] = {}
        self._batch_epochs: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._stop_requested_at: float | None = None
        # False when leaving the group did not finish within the drain bound (the broker away): the process may
        # then exit without waiting for its clients.
        self.closed_cleanly = True
        self.heartbeat = clock()
        self.degraded_reason: str | None = None
        self.stuck_reason: str | None = None
        self._failing_batch: tuple[tuple[str, int, int], ...] = ()
        self._failures_in_a_row = 0
        self.started = False
        # Integrity: the committed offset of each partition (-1: none), the partitions to check before reading
        # them, those set aside, and the input topics' ids (recreating a topic changes its id).
        self.topic_id_of = topic_id_of
        # Once, before the first batch (e.g. judge Redis's durability); retried while Redis is away.
        self.prepare = prepare
        self.live_quality = live_quality
        self.positions: dict[PartitionKey, int] = {}
        self.unchecked: set[PartitionKey] = set()
        self.set_aside: dict[PartitionKey, Violation] = {}
        self.topic_ids: dict[str, str] = {}
        self._next_recheck = 0.0
        self._alarmed_below: set[PartitionKey] = set()

    # -- lifecycle ----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the batch in hand, then leave the group (safe from a signal handler)."""
        if not self._stop.is_set():
            self._stop_requested_at = self.clock()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        self._prepare()
        if not self.stopping:
            self._start_output()
        if self.stopping:
            self._close()
            return
        self.consumer.subscribe(
            [self.options.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self.started = True
        log.info("worker started on %s", self.options.input_topic)
        try:
            while not self.stopping:
                self.heartbeat = self.clock()
                if self.unchecked or (self.set_aside and self.clock() >= self._next_recheck):
                    self._check_partitions()
                messages = self._collect()
                if messages:
                    self._handle(messages)
                if self.between_batches is not None:
                    self.between_batches(len(messages))
        finally:
            self._close()

    def _start_output(self) -> None:
        """Initialise transactions, retrying while the coordinator is away (a fatal error ends the process)."""
        backoff = 0.1
        while not self.stopping:
            try:
                self.output.start()
                self._recovered()
                return
            except OutputError as exc:
                if exc.fatal:
                    raise
                self._degraded(f"kafka: {exc}")
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _prepare(self) -> None:
        backoff = 0.1
        while self.prepare is not None and not self.stopping:
            try:
                self.prepare()
                self._recovered()
                return
            except redis.RedisError as exc:
                self.metrics.redis_errors.inc()
                self._degraded(f"redis: {exc}")
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _close(self) -> None:
        """Leave the group within what is left of the drain bound. Everything processed is committed batch by
        batch, so leaving commits nothing new; with the broker away, closing may not finish, and need not: the
        group notices the missing member after its session timeout, and the batch in hand is replayed."""
        since = self.clock() - self._stop_requested_at if self._stop_requested_at is not None else 0.0
        budget = max(1.0, self.options.drain_timeout_s - since - 1.0)
        try:
            self.output.close(timeout_s=budget / 2)
        except Exception as exc:  # closing must never turn a drain into a crash
            log.warning("closing the producer failed: %s", exc)
        closer = threading.Thread(target=self.consumer.close, name="consumer-close", daemon=True)
        closer.start()
        closer.join(budget / 2)
        self.closed_cleanly = not closer.is_alive()
        if self.closed_cleanly:
            log.info("worker stopped")
        else:
            log.warning("worker stopped without leaving the group cleanly (broker unreachable?)")

    # -- rebalance callbacks (run inside consume/poll) -------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            tp = (p.topic, p.partition)
            self.assigned.add(tp)
            self.unchecked.add(tp)
            self.epochs[tp] = self.epochs.get(tp, 0) + 1
        self.metrics.assigned_partitions.set(len(self.assigned))
        log.info("assigned %s", _fmt(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches are committed before the next poll, so nothing done is uncommitted here; messages of
        # these partitions still in hand are dropped by _collect and re-read by the new owner.
        self._forget(partitions)
        log.info("revoked %s", _fmt(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may already own them, so commit nothing.
        self._forget(partitions)
        log.warning("lost %s", _fmt(partitions))

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            tp = (p.topic, p.partition)
            self.assigned.discard(tp)
            self.unchecked.discard(tp)
            self.positions.pop(tp, None)
            violation = self.set_aside.pop(tp, None)
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(p.topic, str(p.partition))
                if violation is not None:
                    self.metrics.integrity_violations.remove(p.topic, str(p.partition), violation.reason)
        self.metrics.assigned_partitions.set(len(self.assigned))

    # -- the batch ----------------------------------------------------------------------------------

    def _collect(self) -> list[InMessage]:
        before = dict(self.epochs)
        raw = self.batcher.next_batch()
        self._batch_epochs = dict(self.epochs)
        # Re-assigned while the batch was collected: what came before the revoke may have been processed by
        # another owner meanwhile, and librdkafka restarted the partition at its committed offset.
        reassigned = {tp for tp, epoch in before.items() if self._batch_epochs.get(tp) != epoch}
        out: list[InMessage] = []
        dropped: dict[tuple[str, int], int] = {}
        for m in raw:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", err.str())
                continue
            topic, partition = m.topic(), m.partition()
            if topic is None or partition is None or (topic, partition) not in self.assigned:
                continue
            offset = m.offset()
            assert offset is not None
            if (topic, partition) in reassigned or (topic, partition) in self.unchecked \
                    or (topic, partition) in self.set_aside:
                dropped[(topic, partition)] = min(offset, dropped.get((topic, partition), offset))
                continue
            out.append(InMessage(topic, partition, offset, m.key(), m.value()))
        if dropped:
            self._restart_at_committed(dropped)
        return out

    def _restart_at_committed(self, lowest_dropped: dict[tuple[str, int], int]) -> None:
        """Seek partitions whose messages were dropped to their committed offset (the lowest dropped one if none
        is): re-assigned ones, and those not checked yet or set aside."""
        committed = self.consumer.committed([TopicPartition(t, p) for t, p in lowest_dropped], timeout=10.0)
        for tp in committed:
            key = (tp.topic, tp.partition)
            offset = tp.offset if tp.offset >= 0 else lowest_dropped[key]
            log.debug("%s:%s restarting at offset %s", *key, offset)
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    def _handle(self, messages: list[InMessage]) -> None:
        started = time.perf_counter()
        self.metrics.consumed.inc(len(messages))
        self.metrics.batch_size.observe(len(messages))
        out = self._process_with_retry(messages)
        if out is None:
            return  # abandoned: partitions revoked or stopping while Redis was down
        if out.violations:
            # Nothing was applied: set those partitions aside and read the others again.
            for violation in out.violations:
                self._set_aside(violation)
            self._rewind(messages)
            return
        self._alarm_below_watermark(out)
        if not self._publish_with_retry(messages, out):
            self._count_failure(messages)
            return
        self._count_success()
        self.positions.update(out.next_offsets)
        self.metrics.batches.inc()
        self.metrics.enriched.inc(len(out.enriched))
        self.metrics.replayed.inc(out.replayed)
        self.metrics.resends.inc(out.resends)
        self.metrics.edits.inc(out.edits)
        self.metrics.deletes.inc(out.deletes)
        for alert in out.alerts:
            self.metrics.alerts.labels(_alert_kind(alert.value)).inc()
        if self.live_quality is not None:
            self.live_quality.observe(self.processor.predictor.model_version, out.observed)
        for reason in out.dead_letter_reasons:
            self.metrics.dead_letters.labels(reason).inc()
        if out.inference_s:
            self.metrics.inference_seconds.observe(out.inference_s)
        now = time.time()
        for ts in out.event_times:
            self.metrics.end_to_end_seconds.observe(max(0.0, now - ts))
        seconds = time.perf_counter() - started
        self.metrics.batch_seconds.observe(seconds)
        self.batcher.observe(len(messages), seconds)  # batch sizing: what this batch cost

    def _process_with_retry(self, messages: list[InMessage]) -> BatchOutput | None:
        backoff = 0.1
        while True:
            try:
                out = self.processor.process(messages, self.positions, self.topic_ids)
                self._recovered()
                return out
            except redis.RedisError as exc:
                self.metrics.redis_errors.inc()
                self._degraded(f"redis: {exc}")
                messages[:] = self._wait(messages, backoff)
                if not messages or self.stopping:
                    return None
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _publish_with_retry(self, messages: list[InMessage], out: BatchOutput) -> bool:
        backoff = 0.1
        while True:
            try:
                self.output.publish(out)
                self._recovered()
                return True
            except OutputError as exc:
                self.metrics.commit_errors.inc()
                self._degraded(f"kafka: {exc}")
                if self.stopping:
                    # Draining while Kafka fails: give the batch up (Redis has it; whoever reads the partition next
                    # replays it from Redis's copy) rather than outlive the drain bound. The open transaction is
                    # left to the broker, which aborts it after transaction.timeout.ms: with the coordinator away,
                    # librdkafka's abort can block that long itself.
                    self.output.forget_transaction()
                    return False
                if exc.fatal:
                    self._replace_producer(messages, exc)
                    return False
                if exc.abort:
                    self._abort(messages)
                    self.metrics.aborted_transactions.inc()
                    return False
                if self._wait(messages, backoff) != messages:
                    # A partition was revoked while the commit was pending: this transaction can no
                    # longer be committed safely. Abort it and rewind the partitions still held, whose
                    # batch Redis has applied; the new owner of the others replays from the committed offsets.
                    self._abort(messages)
                    return False
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _abort(self, messages: list[InMessage]) -> None:
        """Abort the open transaction and rewind; an abort that fails (e.g. INVALID_TXN_STATE after the
        coordinator died) leaves the producer unusable, so a new one replaces it."""
        try:
            self.output.abort()
        except OutputError as exc:
            self._degraded(f"kafka: {exc}")
            self._replace_producer(messages, exc)
            return
        self._rewind(messages)

    def _replace_producer(self, messages: list[InMessage], cause: OutputError) -> None:
        """A new producer under the same transactional id (its epoch fences the old one), then a replay from
        the batch's first offsets; raises ``cause`` when this keeps happening (the process is restarted)."""
        if not self.output.reset():
            raise cause
        self.metrics.producer_resets.inc()
        backoff = 0.1
        while True:
            try:
                self.output.start()
                break
            except OutputError as exc:
                if exc.fatal:
                    if not self.output.reset():
                        raise
                    self.metrics.producer_resets.inc()
                self._degraded(f"kafka: {exc}")
                self._wait([], backoff)
                if self.stopping:
                    return
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        self._rewind(messages)

    def _wait(self, messages: list[InMessage], backoff: float) -> list[InMessage]:
        """Pause, poll for ``backoff`` seconds (keeps group membership, runs callbacks), resume.

        Returns the messages whose partitions are still assigned in the epoch they were fetched in.
        """
        paused: dict[tuple[str, int], int | None] = {}  # partition -> the epoch it was paused in
        deadline = self.clock() + backoff
        while True:
            # Partitions assigned during the wait are paused too, or they would deliver (and be sought back)
            # in a busy loop.
            fresh = sorted(tp for tp in self.assigned if tp not in paused or paused[tp] != self.epochs.get(tp))
            if fresh:
                self.consumer.pause([TopicPartition(t, p) for t, p in fresh])
                paused.update((tp, self.epochs.get(tp)) for tp in fresh)
            if self.clock() >= deadline:
                break
            self.heartbeat = self.clock()
            msg = self.consumer.poll(max(0.0, min(0.5, deadline - self.clock())))
            if msg is not None and msg.error() is None:
                # Paused partitions deliver nothing; if one slips through, rewind so it is not skipped.
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                if topic is not None and partition is not None and offset is not None:
                    self.consumer.seek(TopicPartition(topic, partition, offset))
        still = [TopicPartition(t, p) for t, p in sorted(self.assigned) if (t, p) not in self.set_aside]
        if still:
            self.consumer.resume(still)
        return [m for m in messages if (m.topic, m.partition) in self.assigned
                and self.epochs.get((m.topic, m.partition)) == self._batch_epochs.get((m.topic, m.partition))]

    # -- integrity ----------------------------------------------------------------------------------

    def _check_partitions(self) -> None:
        """Check the partitions just assigned, and those set aside: their committed offsets against Redis's
        watermarks, the topic ids, a rebuild in progress (the script's own checks, with nothing to apply)."""
        todo = sorted((self.unchecked | set(self.set_aside)) & self.assigned)
        self._next_recheck = self.clock() + self.options.integrity_recheck_s
        if not todo:
            self.unchecked.clear()
            return
        try:
            committed = self.consumer.committed([TopicPartition(t, p) for t, p in todo], timeout=10.0)
        except KafkaException as exc:
            self._degraded(f"kafka: committed offsets: {exc}")
            return  # still unchecked: tried again on the next loop
        for c in committed:
            self.positions[(c.topic, c.partition)] = c.offset if c.offset >= 0 else -1
        for topic in {t for t, _ in todo}:
            self.topic_ids[topic] = self.topic_id_of(topic) or self.topic_ids.get(topic, "")
        try:
            violations = self.processor.check(todo, self.positions, self.topic_ids)
        except redis.RedisError as exc:
            self.metrics.redis_errors.inc()
            self._degraded(f"redis: {exc}")
            return
        bad = {(v.topic, v.partition): v for v in violations}
        for tp in todo:
            self.unchecked.discard(tp)
            if tp in bad:
                self._set_aside(bad[tp])
            elif tp in self.set_aside:
                self._take_back(tp)

    def _set_aside(self, violation: Violation) -> None:
        tp = (violation.topic, violation.partition)
        if tp not in self.set_aside:
            log.error("%s:%s set aside, its aggregates cannot be trusted: %s (%s). %s", *tp, violation.reason,
                      violation.detail, _REPAIR.get(violation.reason, "rebuild the aggregates"))
            self.metrics.integrity_violations.labels(tp[0], str(tp[1]), violation.reason).set(1)
        self.set_aside[tp] = violation
        self.consumer.pause([TopicPartition(*tp)])

    def _take_back(self, tp: PartitionKey) -> None:
        violation = self.set_aside.pop(tp)
        with contextlib.suppress(KeyError):
            self.metrics.integrity_violations.remove(tp[0], str(tp[1]), violation.reason)
        start = self.positions.get(tp, -1)
        log.info("%s:%s taken back (was: %s): reading from offset %s", *tp, violation.reason,
                 start if start >= 0 else "the beginning")
        self.consumer.seek(TopicPartition(*tp, start if start >= 0 else OFFSET_BEGINNING))
        self.consumer.resume([TopicPartition(*tp)])

    def _alarm_below_watermark(self, out: BatchOutput) -> None:
        """Messages older than the last applied batch came again (an offset reset, a new consumer group on old
        aggregates): skipped, counted, and logged once per partition."""
        for (topic, partition), n in out.below_watermark.items():
            self.metrics.below_watermark.labels(topic, str(partition)).inc(n)
            if (topic, partition) not in self._alarmed_below:
                self._alarmed_below.add((topic, partition))
                log.error("%s:%s delivered %d message(s) below Redis's watermark and older than its last applied "
                          "batch (offsets reset, or a new group on old aggregates?): skipped, as counted before; "
                          "further ones are only counted (metric below_watermark_messages)", topic, partition, n)

    def _rewind(self, messages: Sequence[InMessage]) -> None:
        first: dict[tuple[str, int], int] = {}
        for m in messages:
            first.setdefault((m.topic, m.partition), m.offset)
        for (topic, partition), offset in first.items():
            if (topic, partition) in self.assigned:
                self.consumer.seek(TopicPartition(topic, partition, offset))

    def _count_failure(self, messages: Sequence[InMessage]) -> None:
        """The circuit breaker: a batch that keeps failing (e.g. a record Kafka refuses) is replayed for ever,
        so after ``stuck_after_failures`` tries in a row the worker says so: not ready, a metric, one log line."""
        first: dict[tuple[str, int], int] = {}
        for m in messages:
            first.setdefault((m.topic, m.partition), m.offset)
        batch = tuple(sorted((t, p, o) for (t, p), o in first.items()))
        self._failures_in_a_row = self._failures_in_a_row + 1 if batch == self._failing_batch else 1
        self._failing_batch = batch
        if self._failures_in_a_row >= self.options.stuck_after_failures and self.stuck_reason is None:
            start = ", ".join(f"{t}:{p}@{o}" for t, p, o in batch)
            self.stuck_reason = (f"the batch starting at {start} failed {self._failures_in_a_row} times in a row "
                                 f"({self.degraded_reason or 'publish failed'})")
            self.metrics.stuck_batch.set(1)
            log.error("stuck: %s; the worker keeps retrying and reports not ready", self.stuck_reason)

    def _count_success(self) -> None:
        self._failures_in_a_row = 0
        self._failing_batch = ()
        if self.stuck_reason is not None:
            log.info("unstuck: a batch committed again")
            self.stuck_reason = None
            self.metrics.stuck_batch.set(0)

    def _degraded(self, reason: str) -> None:
        if self.degraded_reason is None:
            log.warning("degraded, retrying with backoff: %s", reason)
        self.degraded_reason = reason

    def _recovered(self) -> None:
        if self.degraded_reason is not None:
            log.info("recovered from: %s", self.degraded_reason)
            self.degraded_reason = None


def _alert_kind(value: bytes | None) -> str:
    """The alert's kind, with the aspect left out (labels stay few): negative_share or complaints."""
    try:
        return str(json.loads(value or b"{}").get("kind", "unknown")).split(":", 1)[0]
    except ValueError:
        return "unknown"


def _fmt(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}:{p.partition}" for p in partitions) or "nothing"
