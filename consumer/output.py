"""Publish one processed batch and commit its input offsets.

Transactional (default): enriched records, dead letters, alerts and the consumed offsets go out in ONE Kafka
transaction, so a reader with ``isolation.level=read_committed`` sees each batch once or not at all.
Non-transactional: produce, wait for every delivery report, then commit offsets synchronously: at least
once, and a replay may repeat records on the output topic (each carries ``review_id`` for dedupe).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from consumer.processing import BatchOutput, OutRecord
from reviews_mtl.contracts import DLQ_HEADER_ORIGINAL_SHA256, DLQ_HEADER_ORIGINAL_SIZE

log = logging.getLogger(__name__)


class OutputError(Exception):
    """Publishing a batch failed; ``abort`` says the batch must be processed again from its first offsets."""

    def __init__(self, message: str, *, abort: bool, fatal: bool = False) -> None:
        super().__init__(message)
        self.abort = abort
        self.fatal = fatal


def _too_large(exc: KafkaException) -> bool:
    code = exc.args[0].code() if exc.args and isinstance(exc.args[0], KafkaError) else None
    return code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE)


def _headers_only(rec: OutRecord) -> OutRecord:
    """A dead letter without its value, which the DLQ refused; the original stays at its coordinates."""
    headers = list(rec.headers or [])
    if not any(name == DLQ_HEADER_ORIGINAL_SIZE for name, _ in headers):
        value = rec.value or b""
        headers += [(DLQ_HEADER_ORIGINAL_SIZE, str(len(value)).encode()),
                    (DLQ_HEADER_ORIGINAL_SHA256, hashlib.sha256(value).hexdigest().encode())]
    return OutRecord(rec.key, None, headers)


def _classify(exc: KafkaException, step: str) -> OutputError:
    err: KafkaError = exc.args[0]
    fatal = bool(err.fatal())
    abort = fatal or bool(err.txn_requires_abort()) or not bool(err.retriable())
    return OutputError(f"{step}: {err.str()}", abort=abort, fatal=fatal)


class KafkaOutput:
    def __init__(
        self,
        producer_factory: Callable[[], Producer],
        consumer: Consumer,
        *,
        enriched_topic: str,
        dlq_topic: str,
        transactional: bool,
        alerts_topic: str = "reviews.alerts",
        timeout_s: float = 30.0,
        call_timeout_s: float = 5.0,
        shadow_topic: str | None = None,
    ) -> None:
        self.producer_factory = producer_factory
        self.producer = producer_factory()
        self._resets: list[float] = []
        self.consumer = consumer
        self.enriched_topic = enriched_topic
        self.dlq_topic = dlq_topic
        self.alerts_topic = alerts_topic
        self.shadow_topic = shadow_topic
        self.transactional = transactional
        self.timeout_s = timeout_s
        # Each blocking call of a batch's transaction (offsets, commit, abort) returns within this, as a retriable
        # timeout when the broker is slow: the worker's loop retries it, and stays free to notice a stop request.
        self.call_timeout_s = call_timeout_s
        self._delivery_errors: list[str] = []
        self._in_transaction = False

    def start(self) -> None:
        """Initialise transactions; raises :class:`OutputError` (retry on the same producer unless ``fatal``)."""
        if self.transactional:
            try:
                self.producer.init_transactions(self.timeout_s)
            except KafkaException as exc:
                raise _classify(exc, "init_transactions") from exc

    def publish(self, out: BatchOutput) -> None:
        """Publish and commit; raises :class:`OutputError` (retriable unless ``abort``)."""
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(out.next_offsets.items())]
        if self.transactional:
            self._publish_transaction(out, offsets)
        else:
            self._publish_then_commit(out, offsets)

    def abort(self) -> None:
        """Abort an open transaction (after a failure that requires it); idempotent."""
        self._abort(self.call_timeout_s)

    def forget_transaction(self) -> None:
        """Leave an open transaction to the broker (it aborts it after ``transaction.timeout.ms``): for a worker
        that stops while the coordinator is away, where an abort could block as long."""
        if self._in_transaction:
            log.info("leaving the open transaction to the broker, which aborts it")
        self._in_transaction = False

    def _abort(self, timeout_s: float) -> None:
        if self.transactional and self._in_transaction:
            try:
                self.producer.abort_transaction(timeout_s)
            except KafkaException as exc:
                raise _classify(exc, "abort_transaction") from exc
            finally:
                self._in_transaction = False

    def reset(self, max_per_minute: int = 5) -> bool:
        """Replace a producer that hit a fatal error (e.g. its transaction coordinator died mid-commit)
        with a new one under the same transactional id; the caller then calls :meth:`start`, whose
        ``init_transactions`` fences the old epoch.

        Returns False when resets come too often: then the process should exit and be restarted.
        """
        now = time.monotonic()
        self._resets = [t for t in self._resets if now - t < 60.0] + [now]
        if len(self._resets) > max_per_minute:
            return False
        self._in_transaction = False
        # The old instance is unusable; what it still holds belongs to a transaction that never commits.
        self.producer = self.producer_factory()
        log.warning("producer replaced after a fatal error (%d in the last minute)", len(self._resets))
        return True

    def close(self, timeout_s: float | None = None) -> None:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if self._in_transaction:
            try:
                self._abort(min(timeout, self.call_timeout_s))
            except OutputError as exc:
                log.warning("could not abort the open transaction on close: %s", exc)
        self.producer.flush(timeout)

    # -- internals --------------------------------------------------------------------------------------

    def _produce_all(self, out: BatchOutput) -> None:
        # In a transaction no per-record delivery callback: commit_transaction flushes and fails (abortable) when any
        # record failed, so a Python call per record would only repeat what the commit reports.
        callback = None if self.transactional else self._on_delivery
        produce = self.producer.produce
        groups = [(self.enriched_topic, out.enriched), (self.dlq_topic, out.dead_letters),
                  (self.alerts_topic, out.alerts)]
        if self.shadow_topic is not None:
            groups.append((self.shadow_topic, out.shadow))
        for topic, records in groups:
            for rec in records:
                try:
                    produce(topic, value=rec.value, key=rec.key, headers=rec.headers, on_delivery=callback)
                except (BufferError, KafkaException):
                    self._produce(topic, rec, callback)  # the slow path: queue full, or a record refused

    def _produce(self, topic: str, rec: OutRecord, callback: Callable[[KafkaError | None, Message], None] | None
                 ) -> None:
        while True:
            try:
                self.producer.produce(topic, value=rec.value, key=rec.key, headers=rec.headers,
                                      on_delivery=callback)
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain
            except KafkaException as exc:
                # A per-record error, not a transaction error: retrying the batch would fail the same way.
                if topic != self.dlq_topic or not _too_large(exc):
                    raise OutputError(f"produce to {topic}: {exc.args[0].str()}", abort=True) from exc
                log.warning("dead letter too large for %s even when cut: sending its headers only", topic)
                rec = _headers_only(rec)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err.str()}")

    def _publish_transaction(self, out: BatchOutput, offsets: list[TopicPartition]) -> None:
        if not self._in_transaction:
            self._delivery_errors.clear()
            try:
                self.producer.begin_transaction()
                self._in_transaction = True
                self._produce_all(out)
                self.producer.send_offsets_to_transaction(
                    offsets, self.consumer.consumer_group_metadata(), self.call_timeout_s)
            except KafkaException as exc:
                failure = _classify(exc, "transaction")
                failure.abort = True  # half-built: only a fresh transaction is safe
                raise failure from exc
        try:
            # A retriable commit failure leaves the transaction open: the next call commits it again.
            self.producer.commit_transaction(self.call_timeout_s)
            self._in_transaction = False
        except KafkaException as exc:
            raise _classify(exc, "commit_transaction") from exc

    def _publish_then_commit(self, out: BatchOutput, offsets: list[TopicPartition]) -> None:
        self._delivery_errors.clear()
        self._produce_all(out)
        remaining = self.producer.flush(self.timeout_s)
        if remaining or self._delivery_errors:
            detail = self._delivery_errors[:3] or [f"{remaining} messages not delivered in time"]
            raise OutputError(f"delivery failed: {'; '.join(detail)}", abort=True)
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise _classify(exc, "commit") from exc
