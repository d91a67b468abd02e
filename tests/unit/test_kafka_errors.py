"""Which client errors mean "not yet" (retried until a deadline) and which are final."""

from __future__ import annotations

from confluent_kafka import KafkaError

from reviews_mtl.kafka.errors import is_transient


def test_a_new_topics_partition_missing_from_local_metadata_is_transient() -> None:
    # Seen right after creating a topic on a 3-broker cluster: get_watermark_offsets -> Local: Unknown partition.
    assert is_transient(KafkaError(KafkaError._UNKNOWN_PARTITION))
    assert is_transient(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))


def test_authorization_failures_are_final() -> None:
    assert not is_transient(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
