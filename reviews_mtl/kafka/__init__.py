"""The one owner of Kafka clients: configuration, producers, consumers, admin, topics and test-side reads.

Start reading here: ``clients`` (every confluent-kafka client is built there from ``KafkaSettings``, so SASL/SSL
apply everywhere the same way, plus the role's own keys) → ``admin`` (broker readiness, topics and their
layout) → ``reading`` (whole-topic reads and scans for tests, benchmarks and tools); ``errors`` holds the exceptions::

    KafkaSetupError (RuntimeError)
    ├── BrokerUnavailableError (also TimeoutError)  the broker did not answer in time
    └── TopicError                                  a topic could not be created or did not become ready
"""

from reviews_mtl.kafka.admin import DLQ_PARTITIONS, create_topic, ensure_topics, topic_id, wait_for_broker
from reviews_mtl.kafka.clients import client_config, make_admin, make_consumer, make_producer
from reviews_mtl.kafka.errors import BrokerUnavailableError, KafkaSetupError, TopicError
from reviews_mtl.kafka.reading import IsolationLevel, end_offsets, read_topic, scan_topic

__all__ = [
    "DLQ_PARTITIONS",
    "BrokerUnavailableError",
    "IsolationLevel",
    "KafkaSetupError",
    "TopicError",
    "client_config",
    "create_topic",
    "end_offsets",
    "ensure_topics",
    "make_admin",
    "make_consumer",
    "make_producer",
    "read_topic",
    "scan_topic",
    "topic_id",
    "wait_for_broker",
]
