"""``reviews-mtl stack up --broker tansu|status|down`` end to end, as a user runs it: subprocesses, real Tansu and
Redis (the default broker, Apache Kafka, is in test_stack_default_tools.py).

Independent of REVIEWS_TEST_KAFKA: the stack starts its own servers.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from reviews_mtl.kafka import make_admin, make_producer, read_topic
from reviews_mtl.settings import KafkaSettings
from reviews_mtl.stack.processes import is_alive, port_open

pytestmark = [pytest.mark.integration, pytest.mark.smoke]

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reviews_mtl.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def status(state_dir: Path) -> tuple[int, dict[str, Any]]:
    result = cli("stack", "status", "--json", "--state-dir", str(state_dir))
    return result.returncode, json.loads(result.stdout)


def _pids(payload: dict[str, Any]) -> list[int]:
    return [int(p["pid"]) for p in payload["processes"].values()]


def test_stack_up_status_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "stack"
    started = time.monotonic()
    up = cli("stack", "up", "--broker", "tansu", "--partitions", "3", "--state-dir", str(state_dir))
    up_seconds = time.monotonic() - started
    assert up.returncode == 0, up.stderr
    assert "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:" in up.stdout
    assert up_seconds < 30

    code, payload = status(state_dir)
    pids = _pids(payload)
    try:
        assert code == 0
        assert payload["running"] is True
        assert payload["broker"] == "tansu"
        assert payload["bootstrap_servers"].startswith("127.0.0.1:")
        assert payload["redis_url"].startswith("redis://127.0.0.1:")
        assert set(payload["processes"]) == {"kafka", "redis"}
        assert all(p["alive"] for p in payload["processes"].values())
        assert (state_dir / "stack.json").is_file() and (state_dir / "kafka.pid").is_file()

        # The processes outlived `stack up` and serve: topics with the requested layout, a round trip each.
        kafka = KafkaSettings(bootstrap_servers=payload["bootstrap_servers"], security_protocol="PLAINTEXT")
        topics = make_admin(kafka).list_topics(timeout=10).topics
        assert {name: len(topics[name].partitions) for name in ("reviews", "reviews.enriched", "reviews.dlq")} == {
            "reviews": 3,
            "reviews.enriched": 3,
            "reviews.dlq": 1,
        }
        producer = make_producer(kafka)
        producer.produce("reviews", key="p1", value=b'{"review_id": "r1"}')
        assert producer.flush(10) == 0
        assert [m.value() for m in read_topic(kafka, "reviews")] == [b'{"review_id": "r1"}']
        assert redis.Redis.from_url(payload["redis_url"]).ping()

        # A second `up` finds the running stack and changes nothing.
        again = cli("stack", "up", "--state-dir", str(state_dir), "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["bootstrap_servers"] == payload["bootstrap_servers"]
        assert _pids(status(state_dir)[1]) == pids
    finally:
        down = cli("stack", "down", "--state-dir", str(state_dir))

    assert down.returncode == 0, down.stderr
    assert "stopped: kafka, redis" in down.stdout
    assert not any(is_alive(pid) for pid in pids), "a stack process is still running after `stack down`"
    assert not port_open("127.0.0.1", payload["kafka_port"])
    assert not port_open("127.0.0.1", payload["redis_port"])
    assert not (state_dir / "stack.json").exists()
    code, after = status(state_dir)
    assert code == 1 and after["running"] is False
    assert cli("stack", "down", "--state-dir", str(state_dir)).stdout.strip() == "no stack was running"


def test_stack_up_on_a_taken_port_fails_cleanly(tmp_path: Path) -> None:
    state_dir = tmp_path / "stack"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("stack", "up", "--broker", "tansu", "--kafka-port", str(port), "--state-dir", str(state_dir))
    assert result.returncode == 1
    assert f"kafka port {port} is already in use" in result.stderr
    assert not (state_dir / "stack.json").exists()
    assert status(state_dir)[0] == 1


def test_status_reports_a_dead_process(tmp_path: Path) -> None:
    state_dir = tmp_path / "stack"
    assert cli("stack", "up", "--broker", "tansu", "--partitions", "1", "--state-dir", str(state_dir)).returncode == 0
    _, payload = status(state_dir)
    try:
        redis_pid = payload["processes"]["redis"]["pid"]
        redis.Redis.from_url(payload["redis_url"]).shutdown(nosave=True)
        deadline = time.monotonic() + 10
        while is_alive(redis_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        code, after = status(state_dir)
        assert code == 1
        assert after["running"] is False
        assert after["processes"]["redis"]["alive"] is False
        assert after["processes"]["kafka"]["alive"] is True
    finally:
        assert cli("stack", "down", "--state-dir", str(state_dir)).returncode == 0
    assert not any(is_alive(pid) for pid in _pids(payload))
