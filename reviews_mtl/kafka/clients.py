"""Client factories: every confluent-kafka client of the project is built here from ``KafkaSettings``.

Keyword overrides (``**extra``) are librdkafka keys. Dotted keys are awkward as Python keywords, so an
underscore in a keyword name is read as a dot (``transactional_id="x"`` is ``transactional.id``); librdkafka
has no key with an underscore, so this is unambiguous. ``**{"transactional.id": "x"}`` works too.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, Producer

# confluent_kafka.admin re-exports these without __all__, which mypy strict reads as private.
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from reviews_mtl.settings import KafkaSettings, ProducerSettings

# librdkafka's own log lines go through Python logging under this name instead of raw stderr.
_librdkafka_logger = logging.getLogger("reviews_mtl.kafka.librdkafka")


# Python-only keys of confluent-kafka that contain an underscore and must stay as they are.
_CALLBACK_KEYS = frozenset({"stats_cb", "error_cb", "throttle_cb", "oauth_cb", "on_commit", "on_delivery", "logger"})


def _normalize(extra: dict[str, Any]) -> dict[str, Any]:
    return {key if key in _CALLBACK_KEYS else key.replace("_", "."): value for key, value in extra.items()}


def client_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """Connection keys from ``kafka`` (incl. SASL/SSL) merged with ``extra``; ``extra`` wins."""
    conf = kafka.as_librdkafka_dict()
    conf["logger"] = _librdkafka_logger
    conf.update(_normalize(extra))
    return conf


def make_producer(kafka: KafkaSettings, producer: ProducerSettings | None = None, **extra: Any) -> Producer:
    """An idempotent producer with ``acks=all``; pass ``transactional_id=...`` for a transactional one."""
    settings = producer if producer is not None else ProducerSettings()
    return Producer(client_config(kafka, **{**settings.as_librdkafka_dict(), **_normalize(extra)}))


def make_consumer(kafka: KafkaSettings, group_id: str, **extra: Any) -> Consumer:
    """A consumer in ``group_id`` that never auto-commits; it starts at the earliest offset by default."""
    base: dict[str, Any] = {
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    return Consumer(client_config(kafka, **{**base, **_normalize(extra)}))


def make_admin(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(client_config(kafka))
