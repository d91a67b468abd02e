"""Whether Redis keeps what it acknowledged: the one owner of that rule.

The worker commits a batch's Kafka offsets only after Redis applied the batch. If Redis then loses that write (an
fsync window, a failover to a replica that had not received it, a snapshot restored, an eviction), the aggregates
miss that span for good. So the server's persistence and memory policy are read once at start and judged
(:meth:`RedisDurability.problems`; the setting ``REDIS_DURABILITY`` says whether a problem warns or refuses), and
after each batch the worker waits until the write is durable where the server can say so (:func:`wait_durable`:
``WAITAOF`` on Redis >= 7.2 with AOF on, ``WAIT`` for replicas). The script's integrity checks catch the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import redis

log = logging.getLogger(__name__)


class NotDurable(redis.RedisError):
    """Redis did not confirm a write as durable in time; the worker retries the batch (a replay)."""


@dataclass(frozen=True)
class RedisDurability:
    """What the server says of its persistence, memory policy and replicas."""

    version: tuple[int, ...]
    aof: bool
    appendfsync: str  # "always", "everysec", "no", or "unknown" (CONFIG refused, as on some managed servers)
    maxmemory: int
    maxmemory_policy: str
    replicas: int

    @property
    def waitaof(self) -> bool:
        """Whether WAITAOF can confirm each batch's fsync (and it is needed: ``always`` fsyncs every write)."""
        return self.aof and self.version >= (7, 2) and self.appendfsync != "always"

    def problems(self, wait_replicas: int = 0) -> list[str]:
        """Each way this server can lose a batch it acknowledged, in a sentence; empty when it cannot."""
        out: list[str] = []
        if not self.aof:
            out.append("appendonly is off: a Redis restart loses every batch since the last snapshot "
                       "(turn on appendonly with appendfsync always, or Redis >= 7.2 for WAITAOF)")
        elif self.appendfsync != "always" and not self.waitaof:
            out.append(f"appendfsync is {self.appendfsync} on Redis {'.'.join(map(str, self.version))}: a crash can "
                       "lose the last second of batches Kafka already committed (appendfsync always, or Redis >= 7.2 "
                       "for WAITAOF)")
        if self.maxmemory > 0 and self.maxmemory_policy != "noeviction":
            out.append(f"maxmemory-policy is {self.maxmemory_policy} with maxmemory {self.maxmemory}: Redis may evict "
                       "aggregate keys (use noeviction: writes then fail loudly and the worker waits)")
        if wait_replicas > self.replicas:
            out.append(f"REDIS_WAIT_REPLICAS is {wait_replicas} but {self.replicas} replicas are connected: every "
                       "batch would wait for them")
        return out


def read_durability(client: redis.Redis) -> RedisDurability:
    """Ask the server (INFO, and CONFIG GET where allowed)."""
    info: dict[str, Any] = client.info()
    version = tuple(int(p) for p in str(info.get("redis_version", "0")).split(".") if p.isdigit())
    try:
        fsync = str(cast(dict[str, Any], client.config_get("appendfsync")).get("appendfsync", "unknown"))
    except redis.ResponseError:  # CONFIG renamed or forbidden
        fsync = "unknown"
    return RedisDurability(
        version=version,
        aof=bool(int(info.get("aof_enabled", 0))),
        appendfsync=fsync,
        maxmemory=int(info.get("maxmemory", 0)),
        maxmemory_policy=str(info.get("maxmemory_policy", "noeviction")),
        replicas=int(info.get("connected_slaves", 0)),
    )


@dataclass(frozen=True)
class DurabilityWait:
    """What to wait for after each batch's script, before its Kafka commit."""

    waitaof: bool
    replicas: int
    timeout_ms: int


def wait_durable(client: redis.Redis, wait: DurabilityWait) -> None:
    """Block until the last write is fsynced locally (WAITAOF) and on ``replicas`` replicas; raise
    :class:`NotDurable` when the server does not confirm it within ``timeout_ms``."""
    if wait.waitaof:
        local, _ = client.waitaof(1, 0, wait.timeout_ms)
        if int(local) < 1:
            raise NotDurable(f"WAITAOF: the batch was not fsynced within {wait.timeout_ms} ms")
    if wait.replicas > 0:
        acked = int(client.wait(wait.replicas, wait.timeout_ms))
        if acked < wait.replicas:
            raise NotDurable(f"WAIT: {acked} of {wait.replicas} replicas had the batch after {wait.timeout_ms} ms")
