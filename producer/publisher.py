"""Publishing validated reviews to Kafka, with every delivery report checked.

Start here: :class:`Publisher` wraps one idempotent ``acks=all`` producer (from
:func:`reviews_mtl.kafka.make_producer`) and sends each review keyed by ``product_id``, so all reviews of a
product land on one partition in order. Its delivery callback counts every acknowledgement and every
failure; :meth:`Publisher.close` flushes and turns anything still unacknowledged into a failure, so a
record is either counted ``sent`` or counted ``failed``, never silently lost. :func:`publish_records`
drives it over a stream of records with a rate limit, a progress bar and a :class:`PublishSummary`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from producer.errors import DeliveryError, InvalidRecordError
from producer.records import InvalidRecord, Record
from reviews_mtl.contracts import Retraction, Review
from reviews_mtl.settings import KafkaSettings, ProducerSettings

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

logger = logging.getLogger(__name__)

OnInvalid = Literal["skip", "fail"]
Clock = Callable[[], float]
Sleep = Callable[[float], None]

# How many failures and invalid rows a summary keeps verbatim; the counts are always complete.
MAX_SAMPLES = 20
# Extra seconds given to the final flush beyond the delivery timeout, after which librdkafka itself
# must have reported every message one way or the other.
FLUSH_GRACE_S = 10.0


class TokenBucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up.

    The clock and the sleep are injected so tests run in simulated time. ``acquire`` blocks until the
    tokens are there; a burst of 1 makes the output as smooth as the sleep granularity allows.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = float(rate)
        # Default burst: a tenth of a second's worth, so sleeps are not shorter than the OS can honour.
        self.burst = float(burst) if burst is not None else max(1.0, self.rate / 10)
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self, tokens: float = 1.0) -> bool:
        self._refill()
        # The epsilon absorbs float rounding, which could otherwise leave a sleep too short to move the clock.
        if self._tokens >= tokens - 1e-9:
            self._tokens -= tokens
            return True
        return False

    def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens``, sleeping as long as needed; returns the seconds slept."""
        if tokens > self.burst:
            raise ValueError(f"cannot take {tokens} tokens at once from a bucket of {self.burst}")
        slept = 0.0
        while not self.try_acquire(tokens):
            wait = (tokens - self._tokens) / self.rate
            self._sleep(wait)
            slept += wait
        return slept


@dataclass
class DeliveryFailure:
    review_id: str
    product_id: str
    error: str

    def __str__(self) -> str:
        return f"review {self.review_id} (product {self.product_id}): {self.error}"


@dataclass
class PublishSummary:
    """What happened to every record: ``sent`` are acknowledged by all in-sync replicas."""

    topic: str
    sent: int = 0
    invalid: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    failures: list[DeliveryFailure] = field(default_factory=list)
    invalid_records: list[InvalidRecord] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Acknowledged records per second."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when every valid record was acknowledged (skipped invalid rows do not count against it)."""
        return self.failed == 0

    def as_dict(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "sent": self.sent,
            "invalid": self.invalid,
            "failed": self.failed,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate": round(self.rate, 1),
            "failures": [str(f) for f in self.failures],
            "invalid_records": [r.as_dict() for r in self.invalid_records],
        }

    def render(self) -> str:
        lines = [
            f"topic {self.topic}: sent {self.sent}, invalid {self.invalid}, failed {self.failed}, "
            f"elapsed {self.elapsed_s:.2f}s, rate {self.rate:.1f}/s"
        ]
        lines += [f"  invalid {r}" for r in self.invalid_records]
        if self.invalid > len(self.invalid_records):
            lines.append(f"  ... {self.invalid - len(self.invalid_records)} more invalid rows")
        lines += [f"  FAILED {f}" for f in self.failures]
        if self.failed > len(self.failures):
            lines.append(f"  ... {self.failed - len(self.failures)} more failed deliveries")
        return "\n".join(lines)


class Publisher:
    """One Kafka producer sending reviews keyed by ``product_id``, counting every delivery report.

    Use as a context manager, or call :meth:`close`; the counts live in :attr:`summary`.
    """

    def __init__(
        self,
        topic: str,
        kafka: KafkaSettings | None = None,
        settings: ProducerSettings | None = None,
        *,
        producer: Producer | None = None,
        on_delivered: Callable[[], None] | None = None,
    ) -> None:
        self.topic = topic
        self.settings = settings or ProducerSettings()
        self.summary = PublishSummary(topic=topic)
        self.on_delivered = on_delivered
        self._in_flight = 0
        self._fatal: str | None = None
        if producer is None:
            from reviews_mtl.kafka import make_producer

            # Connection errors surface through librdkafka's log (routed to Python logging by
            # make_producer) and, for each record, through its delivery report.
            producer = make_producer(kafka or KafkaSettings(), self.settings)
        self._producer = producer

    # -- callbacks, called from poll()/flush() on this thread --------------------------------------

    def _delivery_callback(self, review_id: str, product_id: str) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            self._in_flight -= 1
            if err is None:
                self.summary.sent += 1
                if self.on_delivered is not None:
                    self.on_delivered()
                return
            self.summary.failed += 1
            if err.fatal():
                # A fatal error (e.g. the idempotent sequence broke) ends this producer: stop sending.
                self._fatal = str(err)
            if len(self.summary.failures) < MAX_SAMPLES:
                self.summary.failures.append(DeliveryFailure(review_id, product_id, str(err)))
                logger.error("delivery failed for review %s: %s", review_id, err)
            elif self.summary.failed % 1000 == 0:  # a dead broker fails every record: log a count, not each
                logger.error("%d deliveries failed so far; latest: %s", self.summary.failed, err)

        return on_delivery

    # -- sending ----------------------------------------------------------------------------------

    def send(self, review: Review | Retraction, *, timestamp_now: bool = False) -> None:
        """Queue one review (or a delete); blocks (serving delivery reports) while the local queue is full."""
        if self._fatal is not None:
            raise DeliveryError(f"producer failed fatally: {self._fatal}")
        if timestamp_now:
            review = review.model_copy(update={"timestamp": time.time()})
        value = review.to_bytes()
        key = review.product_id.encode("utf-8")
        callback = self._delivery_callback(review.review_id, review.product_id)
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, on_delivery=callback)
                break
            except BufferError:
                # The local queue is full: serve delivery reports until there is room, then retry.
                self._producer.poll(0.1)
        self._in_flight += 1
        self._producer.poll(0)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def flush(self, timeout_s: float | None = None) -> int:
        """Wait for the delivery reports of everything sent so far, keeping the producer open (a long-lived
        sender checks its records batch by batch); returns how many are still unacknowledged."""
        if timeout_s is None:
            timeout_s = self.settings.delivery_timeout_ms / 1000 + FLUSH_GRACE_S
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float | None = None) -> PublishSummary:
        """Flush, wait for every delivery report, and count whatever never got one as failed."""
        if timeout_s is None:
            timeout_s = self.settings.delivery_timeout_ms / 1000 + FLUSH_GRACE_S
        remaining = self._producer.flush(timeout_s)
        if remaining or self._in_flight:
            lost = max(remaining, self._in_flight)
            logger.error("%d record(s) unacknowledged after %.1fs flush: counted as failed", lost, timeout_s)
            self.summary.failed += lost
            if len(self.summary.failures) < MAX_SAMPLES:
                self.summary.failures.append(
                    DeliveryFailure("?", "?", f"{lost} record(s) not acknowledged within {timeout_s:.1f}s")
                )
            self._in_flight = 0
        return self.summary

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _record_invalid(summary: PublishSummary, record: InvalidRecord) -> None:
    summary.invalid += 1
    if len(summary.invalid_records) < MAX_SAMPLES:
        summary.invalid_records.append(record)
    logger.warning("invalid record skipped: %s", record)


def check_all_valid(records: Iterable[Record]) -> int:
    """Validate every record without sending any; raises :class:`InvalidRecordError` listing the bad
    ones, else returns the count of valid records. Used when invalid rows are fatal, so nothing at all
    is sent from an input that has one."""
    invalid: list[InvalidRecord] = []
    total_invalid = 0
    valid = 0
    for record in records:
        if isinstance(record, InvalidRecord):
            total_invalid += 1
            if len(invalid) < MAX_SAMPLES:
                invalid.append(record)
        else:
            valid += 1
    if total_invalid:
        raise InvalidRecordError(invalid, total_invalid)
    return valid


def publish_records(
    records: Iterable[Record],
    publisher: Publisher,
    *,
    rate: float | None = None,
    progress: bool | None = None,
    total: int | None = None,
    timestamp_now: bool = False,
    clock: Clock = time.monotonic,
) -> PublishSummary:
    """Send the valid records through ``publisher`` (invalid ones are counted and skipped), then close it.

    ``progress=None`` shows a bar only on a terminal.
    """
    from tqdm import tqdm

    bucket = TokenBucket(rate) if rate else None
    summary = publisher.summary
    start = clock()
    # The bar counts acknowledgements, not queued records: what it shows is what the broker has.
    bar = tqdm(total=total, unit="rec", disable=None if progress is None else not progress, desc=publisher.topic)
    publisher.on_delivered = lambda: bar.update(1)
    try:
        for record in records:
            if isinstance(record, InvalidRecord):
                _record_invalid(summary, record)
                continue
            if bucket is not None:
                bucket.acquire()
            publisher.send(record.review, timestamp_now=timestamp_now)
            if summary.failed and not bar.disable:
                bar.set_postfix(failed=summary.failed, refresh=False)
    finally:
        publisher.close()
        bar.close()
        summary.elapsed_s = clock() - start
    logger.info(
        "published to %s: sent %d, invalid %d, failed %d in %.2fs",
        summary.topic,
        summary.sent,
        summary.invalid,
        summary.failed,
        summary.elapsed_s,
    )
    return summary
