"""The embedded stack's state directory (``StackSettings.state_dir``, default ``.reviews-mtl/stack``).

Layout::

    <state_dir>/
        stack.json      bootstrap_servers, redis_url, ports, partitions, and per process: pid, start time, argv, log
        kafka.pid       pid of the Tansu broker          kafka.log   its output
        redis.pid       pid of redis-server              redis.log   its output
        redis/          redis-server's working directory (no persistence unless asked)

``stack.json`` is written only after every server answers, and removed by ``stack down``; the pid files are
there for people and shell tools (``kill $(cat .reviews-mtl/stack/kafka.pid)``).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reviews_mtl.stack.processes import ProcessRecord

__all__ = ["STATE_FILE", "StackState", "clear_state", "load_state", "save_state"]

STATE_FILE = "stack.json"


@dataclass(frozen=True)
class StackState:
    bootstrap_servers: str
    redis_url: str
    kafka_port: int
    redis_port: int
    partitions: int
    broker: str
    topics: tuple[str, ...]
    processes: dict[str, ProcessRecord] = field(default_factory=dict)

    def alive(self) -> dict[str, bool]:
        return {name: record.alive() for name, record in self.processes.items()}

    def to_json(self, state_dir: Path) -> dict[str, Any]:
        alive = self.alive()
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "redis_url": self.redis_url,
            "running": bool(alive) and all(alive.values()),
            "broker": self.broker,
            "kafka_port": self.kafka_port,
            "redis_port": self.redis_port,
            "partitions": self.partitions,
            "topics": list(self.topics),
            "state_dir": str(state_dir),
            "processes": {
                name: {"pid": r.pid, "alive": alive[name], "log": r.log} for name, r in self.processes.items()
            },
        }


def save_state(state_dir: Path, state: StackState) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    payload = asdict(state)
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, state_dir / STATE_FILE)  # atomic: a reader never sees half a file
    for name, record in state.processes.items():
        (state_dir / f"{name}.pid").write_text(f"{record.pid}\n")


def load_state(state_dir: Path) -> StackState | None:
    path = state_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"unreadable stack state {path}: {exc}") from exc
    processes = {
        name: ProcessRecord(
            name=p["name"], pid=int(p["pid"]), started=p.get("started"), argv=tuple(p["argv"]), log=p["log"]
        )
        for name, p in raw.get("processes", {}).items()
    }
    return StackState(
        bootstrap_servers=raw["bootstrap_servers"],
        redis_url=raw["redis_url"],
        kafka_port=int(raw["kafka_port"]),
        redis_port=int(raw["redis_port"]),
        partitions=int(raw["partitions"]),
        broker=raw.get("broker", "tansu"),
        topics=tuple(raw.get("topics", ())),
        processes=processes,
    )


def clear_state(state_dir: Path, names: tuple[str, ...] = ("kafka", "redis")) -> None:
    """Remove stack.json and pid files; logs stay for post-mortems."""
    for path in [state_dir / STATE_FILE, *(state_dir / f"{n}.pid" for n in names)]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
