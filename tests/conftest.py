"""Shared fixtures, one plugin module per concern.

- ``tests.fixtures.brokers``: the real Kafka broker (Apache Kafka jars, Tansu, external or testcontainers,
  chosen by ``REVIEWS_TEST_KAFKA``) and a real Redis, both session-scoped; unique topics and groups per test.
- ``tests.fixtures.model``: tiny random models for unit tests and the trained ``demo`` artifact for integration tests.
"""

pytest_plugins = ["tests.fixtures.brokers", "tests.fixtures.model"]
