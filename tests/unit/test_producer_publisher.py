"""The publisher's accounting with a fake producer (the real broker is in tests/integration): every record
ends up counted as sent or failed, a full local queue is waited out, and nothing unacknowledged is lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from producer.errors import DeliveryError
from producer.publisher import Publisher, publish_records
from producer.readers import validate_objects


class FakeError:
    def __init__(self, text: str, fatal: bool = False) -> None:
        self.text, self._fatal = text, fatal

    def fatal(self) -> bool:
        return self._fatal

    def __str__(self) -> str:
        return self.text


class FakeProducer:
    """The slice of confluent_kafka.Producer the publisher uses; acknowledges on poll/flush.

    ``stuck``: never acknowledges. ``lazy``: acknowledges only when the caller waits (poll with a timeout),
    as librdkafka does while the broker is slow, so the local queue fills up.
    """

    def __init__(
        self,
        *,
        capacity: int = 1000,
        fail: Callable[[bytes], FakeError | None] = lambda _: None,
        stuck: bool = False,
        lazy: bool = False,
    ) -> None:
        self.capacity, self.fail, self.stuck, self.lazy = capacity, fail, stuck, lazy
        self.queue: list[tuple[bytes, Callable[..., None]]] = []
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.buffer_errors = 0

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Callable[..., None]) -> None:
        if len(self.queue) >= self.capacity:
            self.buffer_errors += 1
            raise BufferError("Local: Queue full")
        self.sent.append((topic, key, value))
        self.queue.append((value, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        if self.stuck or (self.lazy and timeout == 0):
            return 0
        served = len(self.queue)
        for value, cb in self.queue:
            cb(self.fail(value), None)
        self.queue.clear()
        return served

    def flush(self, timeout: float = -1) -> int:
        self.poll(timeout)
        return len(self.queue)


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"review_id": f"r{i}", "product_id": f"p{i % 3}", "text": f"text {i}"} for i in range(n)]


def test_keys_by_product_and_counts_acknowledgements() -> None:
    fake = FakeProducer()
    summary = publish_records(validate_objects(_rows(10)), Publisher("t", producer=fake), progress=False)  # type: ignore[arg-type]
    assert (summary.sent, summary.failed, summary.invalid) == (10, 0, 0) and summary.ok
    assert all(topic == "t" for topic, _, _ in fake.sent)
    assert [key for _, key, _ in fake.sent] == [f"p{i % 3}".encode() for i in range(10)]


def test_full_local_queue_is_waited_out_not_dropped() -> None:
    fake = FakeProducer(capacity=2, lazy=True)
    summary = publish_records(validate_objects(_rows(7)), Publisher("t", producer=fake), progress=False)  # type: ignore[arg-type]
    assert fake.buffer_errors > 0
    assert summary.sent == 7 and len(fake.sent) == 7


def test_failed_deliveries_are_counted_with_their_reviews() -> None:
    fake = FakeProducer(fail=lambda v: FakeError("Broker: Not enough in-sync replicas") if b'"r3"' in v else None)
    summary = publish_records(validate_objects(_rows(5)), Publisher("t", producer=fake), progress=False)  # type: ignore[arg-type]
    assert (summary.sent, summary.failed) == (4, 1) and not summary.ok
    assert summary.failures[0].review_id == "r3" and "in-sync" in summary.failures[0].error
    assert "FAILED review r3" in summary.render()


def test_unacknowledged_after_flush_count_as_failed() -> None:
    fake = FakeProducer(stuck=True)
    publisher = Publisher("t", producer=fake)  # type: ignore[arg-type]
    summary = publish_records(validate_objects(_rows(4)), publisher, progress=False)
    assert (summary.sent, summary.failed) == (0, 4)
    assert "not acknowledged" in summary.failures[-1].error


def test_flush_waits_for_reports_and_keeps_the_producer_open() -> None:
    from reviews_mtl.contracts import Review

    fake = FakeProducer(lazy=True)
    publisher = Publisher("t", producer=fake)  # type: ignore[arg-type]
    for i in range(3):
        publisher.send(Review(review_id=f"r{i}", product_id="p", text="fine"))
    assert publisher.summary.sent == 0 and publisher.in_flight == 3  # nothing acknowledged without waiting
    assert publisher.flush() == 0
    assert (publisher.summary.sent, publisher.in_flight) == (3, 0)
    publisher.send(Review(review_id="r3", product_id="p", text="still open"))
    assert publisher.close().sent == 4


def test_flush_reports_what_stays_unacknowledged() -> None:
    from reviews_mtl.contracts import Review

    publisher = Publisher("t", producer=FakeProducer(stuck=True))  # type: ignore[arg-type]
    publisher.send(Review(review_id="r0", product_id="p", text="fine"))
    assert publisher.flush(timeout_s=0.01) == 1 and publisher.summary.sent == 0


def test_fatal_error_stops_sending() -> None:
    fake = FakeProducer(fail=lambda v: FakeError("Fatal: idempotence broken", fatal=True))
    publisher = Publisher("t", producer=fake)  # type: ignore[arg-type]
    with pytest.raises(DeliveryError, match="fatally"):
        publish_records(validate_objects(_rows(5)), publisher, progress=False)
    assert len(fake.sent) == 1


def test_invalid_records_are_counted_not_sent() -> None:
    fake = FakeProducer()
    rows = [*_rows(2), {"review_id": "x", "product_id": "p"}]
    summary = publish_records(validate_objects(rows), Publisher("t", producer=fake), progress=False)  # type: ignore[arg-type]
    assert (summary.sent, summary.invalid) == (2, 1) and len(fake.sent) == 2
    assert summary.invalid_records[0].line == 3 and summary.ok
