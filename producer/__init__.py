"""Publish reviews to Kafka: from files (``reviews-mtl produce``) or from an application (:func:`publish`).

Start reading here: :mod:`producer.readers` validates rows of JSONL, CSV and Parquet files with the
consumer's own contract; :mod:`producer.publisher` sends them keyed by ``product_id`` and checks every
delivery report; :mod:`producer.export` writes reviews out as JSONL in the input contract.

Library use::

    from producer import publish

    summary = publish([{"review_id": "r1", "product_id": "p1", "text": "Great kettle"}])
    if not summary.ok:
        raise SystemExit(summary.render())
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from producer.errors import DeliveryError, InputError, InvalidRecordError, ProducerError
from producer.publisher import (
    OnInvalid,
    Publisher,
    PublishSummary,
    TokenBucket,
    check_all_valid,
    publish_records,
)
from producer.readers import read_records, validate_objects
from producer.records import InvalidRecord, ValidRecord
from reviews_mtl.contracts import Retraction, Review
from reviews_mtl.settings import KafkaSettings, ProducerSettings, TopicSettings

__all__ = [
    "DeliveryError",
    "InputError",
    "InvalidRecord",
    "InvalidRecordError",
    "ProducerError",
    "PublishSummary",
    "Publisher",
    "TokenBucket",
    "ValidRecord",
    "publish",
    "read_records",
]


def publish(
    reviews: Iterable[Review | Retraction | Mapping[str, object]],
    *,
    kafka: KafkaSettings | None = None,
    topic: str | None = None,
    settings: ProducerSettings | None = None,
    rate: float | None = None,
    on_invalid: OnInvalid | None = None,
    progress: bool = False,
    raise_on_failure: bool = False,
) -> PublishSummary:
    """Validate and send reviews (``Review`` objects or plain dicts in the input contract).

    Each review is keyed by ``product_id``; the call returns once every record is acknowledged or has
    failed. Settings default to the environment (``KAFKA_*``, ``REVIEWS_PRODUCER_*``,
    ``REVIEWS_TOPIC_INPUT``). With ``on_invalid="fail"`` the input is validated in full first and
    :class:`InvalidRecordError` is raised before anything is sent. A failed delivery is counted in the
    summary (``summary.ok`` is false) or, with ``raise_on_failure``, raised as :class:`DeliveryError`.
    """
    settings = settings or ProducerSettings()
    mode: OnInvalid = on_invalid or settings.on_invalid
    items: Iterable[object] = reviews
    if mode == "fail":
        items = list(reviews)  # validated twice: once to decide, once to send
        check_all_valid(validate_objects(items))
    publisher = Publisher(topic or TopicSettings().input, kafka or KafkaSettings(), settings)
    summary = publish_records(
        validate_objects(items),
        publisher,
        rate=rate if rate is not None else settings.rate,
        progress=progress,
    )
    if raise_on_failure and not summary.ok:
        raise DeliveryError(f"{summary.failed} record(s) not delivered to {summary.topic}: {summary.failures[:3]}")
    return summary
