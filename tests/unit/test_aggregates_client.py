"""The Redis client is built without retries of its own: the worker retries whole batches."""

from __future__ import annotations

from pydantic import SecretStr
from redis.connection import Connection

from reviews_mtl.aggregates.store import connect
from reviews_mtl.settings import RedisSettings


def test_the_client_never_retries_by_itself() -> None:
    client = connect(RedisSettings(url=SecretStr("redis://127.0.0.1:1/0")))
    connection = client.connection_pool.make_connection()
    assert isinstance(connection, Connection)
    assert connection.retry.get_retries() == 0
    assert client.connection_pool.connection_kwargs["retry_on_timeout"] is False
