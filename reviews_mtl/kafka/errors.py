"""The Kafka owner's exceptions and the one rule for which broker errors are worth retrying.

KafkaSetupError (RuntimeError)
├── BrokerUnavailableError (also TimeoutError)  the broker did not answer in time
└── TopicError                                  a topic could not be created or did not become ready
"""

from __future__ import annotations

from confluent_kafka import KafkaError


class KafkaSetupError(RuntimeError):
    """Root of the errors raised while connecting to Kafka or preparing topics."""


class BrokerUnavailableError(KafkaSetupError, TimeoutError):
    """No broker answered a metadata request before the deadline."""


class TopicError(KafkaSetupError):
    """A topic could not be created, or its partitions did not all get a leader in time."""


# Errors that mean "not yet" around topic creation and leader moves. librdkafka flags only some as retriable
# (get_watermark_offsets never does), so these codes are retried explicitly.
_TRANSIENT_CODES = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,  # a new topic's partitions not yet in this client's metadata
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_CONTROLLER,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
    }
)


def is_transient(error: KafkaError) -> bool:
    """True for an error that means "not yet": retry it until the caller's deadline."""
    return bool(error.retriable()) or error.code() in _TRANSIENT_CODES
