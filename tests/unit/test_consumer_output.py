"""The Kafka side of a batch, with fakes of the client protocol: what is retried, aborted, or rebuilt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from consumer.metrics import WorkerMetrics
from consumer.output import KafkaOutput, OutputError
from consumer.processing import BatchOutput, InMessage, OutRecord
from consumer.worker import Worker, WorkerOptions


@dataclass
class FakeProducer:
    fail_commit: list[KafkaError] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    produced: list[tuple[str, bytes | None]] = field(default_factory=list)

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any) -> None:
        self.produced.append((topic, value))

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], meta: object, timeout: float) -> None:
        self.calls.append("offsets:" + ",".join(f"{o.partition}@{o.offset}" for o in offsets))

    def commit_transaction(self, timeout: float) -> None:
        if self.fail_commit:
            raise KafkaException(self.fail_commit.pop(0))
        self.calls.append("commit")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")

    def flush(self, timeout: float = 0) -> int:
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0


@dataclass
class FakeConsumer:
    seeks: list[tuple[int, int]] = field(default_factory=list)

    def consumer_group_metadata(self) -> object:
        return object()

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))

    def pause(self, partitions: list[TopicPartition]) -> None:
        pass

    def resume(self, partitions: list[TopicPartition]) -> None:
        pass

    def poll(self, timeout: float) -> None:
        return None


def _setup(*producers: FakeProducer) -> tuple[Worker, KafkaOutput, FakeConsumer, CollectorRegistry]:
    queue = list(producers)
    consumer = FakeConsumer()
    output = KafkaOutput(lambda: queue.pop(0), consumer, enriched_topic="out", dlq_topic="dlq",  # type: ignore[arg-type,return-value]
                         transactional=True)
    output.start()
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    worker = Worker(consumer, output, None, metrics,  # type: ignore[arg-type]
                    WorkerOptions("in", 10, 0.1, 5.0))
    worker.assigned = {("in", 0), ("in", 1)}
    return worker, output, consumer, registry


MESSAGES = [InMessage("in", 0, 5, b"k", b"v"), InMessage("in", 0, 6, b"k", b"v"), InMessage("in", 1, 9, b"k", b"v")]


def _batch() -> BatchOutput:
    out = BatchOutput()
    out.enriched = [OutRecord(b"k", b"e1"), OutRecord(b"k", b"e2")]
    out.dead_letters = [OutRecord(b"k", b"bad", [("x-error-reason", b"invalid_json")])]
    out.next_offsets = {("in", 0): 7, ("in", 1): 10}
    return out


def test_one_transaction_carries_records_dead_letters_and_offsets() -> None:
    p = FakeProducer()
    worker, _, consumer, _ = _setup(p)
    assert worker._publish_with_retry(list(MESSAGES), _batch()) is True
    assert p.calls == ["init", "begin", "offsets:0@7,1@10", "commit"]
    assert p.produced == [("out", b"e1"), ("out", b"e2"), ("dlq", b"bad")]
    assert consumer.seeks == []


def test_retriable_commit_failure_commits_the_same_transaction_again() -> None:
    p = FakeProducer(fail_commit=[KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True)])
    worker, _, consumer, registry = _setup(p)
    assert worker._publish_with_retry(list(MESSAGES), _batch()) is True
    assert p.calls == ["init", "begin", "offsets:0@7,1@10", "commit"]  # begun once, committed once
    assert len(p.produced) == 3 and consumer.seeks == []
    assert registry.get_sample_value("reviews_mtl_commit_errors_total") == 1


def test_abortable_failure_aborts_and_rewinds_to_the_batch_start() -> None:
    p = FakeProducer(fail_commit=[KafkaError(KafkaError._FENCED, "epoch bump", txn_requires_abort=True)])
    worker, _, consumer, registry = _setup(p)
    assert worker._publish_with_retry(list(MESSAGES), _batch()) is False
    assert p.calls[-1] == "abort"
    assert sorted(consumer.seeks) == [(0, 5), (1, 9)]
    assert registry.get_sample_value("reviews_mtl_aborted_transactions_total") == 1


def test_fatal_failure_replaces_the_producer_and_replays() -> None:
    broken = FakeProducer(fail_commit=[KafkaError(KafkaError.INVALID_TXN_STATE, "coordinator died", fatal=True)])
    fresh = FakeProducer()
    worker, output, consumer, registry = _setup(broken, fresh)
    assert worker._publish_with_retry(list(MESSAGES), _batch()) is False
    new_producer: object = output.producer
    assert new_producer is fresh and fresh.calls == ["init"]  # the new epoch fences the old one
    assert sorted(consumer.seeks) == [(0, 5), (1, 9)]
    assert registry.get_sample_value("reviews_mtl_producer_resets_total") == 1
    # The replayed batch then goes through the new producer.
    assert worker._publish_with_retry(list(MESSAGES), _batch()) is True
    assert fresh.calls[-1] == "commit"


def test_fatal_failures_that_keep_coming_end_the_process() -> None:
    fatal = KafkaError(KafkaError.INVALID_TXN_STATE, "again", fatal=True)
    worker, _, _, _ = _setup(*[FakeProducer(fail_commit=[fatal]) for _ in range(8)])
    # Five replacements a minute are allowed; the sixth fatal error ends the process, to be restarted.
    assert [worker._publish_with_retry(list(MESSAGES), _batch()) for _ in range(5)] == [False] * 5
    with pytest.raises(OutputError, match="again"):
        worker._publish_with_retry(list(MESSAGES), _batch())


@dataclass
class FailingAbortProducer(FakeProducer):
    abort_error: KafkaError | None = None

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")
        if self.abort_error is not None:
            raise KafkaException(self.abort_error)


def test_a_fatal_error_from_the_abort_replaces_the_producer_and_replays() -> None:
    # Seen in the fault suite: the coordinator dies mid-commit, the commit needs an abort (epoch bump), and
    # the abort itself fails with INVALID_TXN_STATE. The worker must recover, not exit.
    broken = FailingAbortProducer(
        fail_commit=[KafkaError(KafkaError._TIMED_OUT, "timed out, requires epoch bump", txn_requires_abort=True)],
        abort_error=KafkaError(KafkaError.INVALID_TXN_STATE, "invalid state", fatal=True))
    fresh = FakeProducer()
    worker, output, consumer, registry = _setup(broken, fresh)
    assert worker._publish_with_retry(list(MESSAGES), _batch()) is False
    assert output.producer is fresh and fresh.calls == ["init"]  # type: ignore[comparison-overlap]
    assert sorted(consumer.seeks) == [(0, 5), (1, 9)]
    assert registry.get_sample_value("reviews_mtl_producer_resets_total") == 1
    assert worker._publish_with_retry(list(MESSAGES), _batch()) is True


def test_a_retriable_error_from_the_abort_replaces_the_producer_too() -> None:
    broken = FailingAbortProducer(
        fail_commit=[KafkaError(KafkaError._FENCED, "epoch bump", txn_requires_abort=True)],
        abort_error=KafkaError(KafkaError._TIMED_OUT, "coordinator away", retriable=True))
    fresh = FakeProducer()
    worker, output, consumer, _ = _setup(broken, fresh)
    assert worker._publish_with_retry(list(MESSAGES), _batch()) is False
    assert output.producer is fresh  # type: ignore[comparison-overlap]
    assert sorted(consumer.seeks) == [(0, 5), (1, 9)]


@dataclass
class SlowInitProducer(FakeProducer):
    init_failures: int = 0

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init")
        if self.init_failures:
            self.init_failures -= 1
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator not available", retriable=True))


def test_a_new_producer_retries_init_while_the_coordinator_is_away() -> None:
    broken = FakeProducer(fail_commit=[KafkaError(KafkaError.INVALID_TXN_STATE, "fatal", fatal=True)])
    fresh = SlowInitProducer(init_failures=2)
    worker, output, consumer, _ = _setup(broken, fresh)
    assert worker._publish_with_retry(list(MESSAGES), _batch()) is False
    assert output.producer is fresh and fresh.calls == ["init", "init", "init"]  # type: ignore[comparison-overlap]
    assert sorted(consumer.seeks) == [(0, 5), (1, 9)]


@dataclass
class RevokingConsumer(FakeConsumer):
    """Revokes partition 1 (a cooperative rebalance) during the first poll of a wait."""

    worker: Worker | None = None

    def poll(self, timeout: float) -> None:
        if self.worker is not None and ("in", 1) in self.worker.assigned:
            self.worker._on_revoke(self, [TopicPartition("in", 1)])  # type: ignore[arg-type]
        return None


def test_a_partial_revoke_during_a_commit_retry_rewinds_the_partitions_kept() -> None:
    p = FakeProducer(fail_commit=[KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True)])
    consumer = RevokingConsumer()
    output = KafkaOutput(lambda: p, consumer, enriched_topic="out", dlq_topic="dlq",  # type: ignore[arg-type,return-value]
                         transactional=True)
    output.start()
    worker = Worker(consumer, output, None, WorkerMetrics.create(CollectorRegistry()),  # type: ignore[arg-type]
                    WorkerOptions("in", 10, 0.1, 5.0))
    worker.assigned = {("in", 0), ("in", 1)}
    consumer.worker = worker
    assert worker._publish_with_retry(list(MESSAGES), _batch()) is False
    assert p.calls[-1] == "abort"
    # p0 stays here: its batch was applied in Redis but never committed, so it must be read again.
    assert consumer.seeks == [(0, 5)]


@dataclass
class SizeLimitedProducer(FakeProducer):
    """Refuses, as librdkafka does locally, any record whose value is over ``limit`` bytes."""

    limit: int = 100

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any) -> None:
        if value is not None and len(value) > self.limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large"))
        self.produced.append((topic, value))
        self.headers_seen.append(kw.get("headers"))

    headers_seen: list[Any] = field(default_factory=list)


def test_a_dead_letter_the_dlq_refuses_goes_out_as_headers_only_and_the_batch_commits() -> None:
    p = SizeLimitedProducer(limit=100)
    worker, _, consumer, _ = _setup(p)
    out = _batch()
    out.dead_letters = [OutRecord(b"k", b"x" * 500, [("x-error-reason", b"invalid_json")])]
    assert worker._publish_with_retry(list(MESSAGES), out) is True
    assert p.calls[-1] == "commit" and consumer.seeks == []
    assert p.produced[-1] == ("dlq", None)
    names = {name for name, _ in p.headers_seen[-1]}
    assert {"x-error-reason", "x-original-size", "x-original-sha256"} <= names


def test_an_enriched_record_kafka_refuses_aborts_the_batch() -> None:
    p = SizeLimitedProducer(limit=1)
    worker, _, consumer, _ = _setup(p)
    assert worker._publish_with_retry(list(MESSAGES), _batch()) is False
    assert p.calls[-1] == "abort"
    assert sorted(consumer.seeks) == [(0, 5), (1, 9)]


@dataclass
class FixedProcessor:
    def process(self, messages: list[InMessage], starts: object = None, topic_ids: object = None) -> BatchOutput:
        return _batch()


def test_the_same_batch_failing_again_and_again_marks_the_worker_stuck_until_one_commits() -> None:
    refuse = KafkaError(KafkaError._FENCED, "refused", txn_requires_abort=True)
    p = FakeProducer(fail_commit=[refuse] * 5)
    worker, _, _, registry = _setup(p)
    worker.processor = FixedProcessor()  # type: ignore[assignment]
    for attempt in range(1, 6):
        worker._handle(list(MESSAGES))
        assert (worker.stuck_reason is not None) == (attempt >= 5)
    assert worker.stuck_reason is not None and "in:0@5" in worker.stuck_reason
    assert registry.get_sample_value("reviews_mtl_stuck_batch") == 1
    worker._handle(list(MESSAGES))  # the sixth try commits
    assert worker.stuck_reason is None and registry.get_sample_value("reviews_mtl_stuck_batch") == 0
