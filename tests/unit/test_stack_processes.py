"""Process plumbing of the local stack with real (tiny) processes: spawn, liveness, stop, crash, state file."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reviews_mtl.stack.apache_kafka import ApacheKafkaCluster, jars_dir, random_cluster_id
from reviews_mtl.stack.processes import (
    ProcessRecord,
    ProcessStartError,
    free_port,
    is_alive,
    port_open,
    spawn,
    start_time,
    stop_all,
    stop_pid,
    wait_for_port,
)
from reviews_mtl.stack.state import StackState, clear_state, load_state, save_state


def _sleeper(tmp_path: Path, script: str = "sleep 30") -> subprocess.Popen[bytes]:
    return spawn(["sh", "-c", script], tmp_path / "out.log", die_with_parent=True)


def test_free_port_is_bindable_and_closed() -> None:
    port = free_port()
    assert 1024 < port < 65536
    assert not port_open("127.0.0.1", port)


def test_spawned_process_is_alive_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = _sleeper(tmp_path)
    record = ProcessRecord.of("sleeper", process, tmp_path / "out.log")
    assert record.alive()
    assert stop_pid(record.pid, record.started, timeout_s=5)
    assert not record.alive()
    assert process.poll() is not None


def test_a_reused_pid_is_not_mistaken_for_our_process(tmp_path: Path) -> None:
    process = _sleeper(tmp_path)
    started = start_time(process.pid)
    assert started is not None
    assert is_alive(process.pid, started)
    assert not is_alive(process.pid, started + 1), "a different start time means a different process"
    stop_pid(process.pid, started)


def test_sigterm_ignorer_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    process = _sleeper(tmp_path, "trap '' TERM; while :; do sleep 0.1; done")
    time.sleep(0.2)  # let the shell install its trap
    started = time.monotonic()
    assert stop_pid(process.pid, timeout_s=1)
    assert 0.9 < time.monotonic() - started < 8
    assert process.poll() is not None


def test_stop_all_stops_every_process_concurrently(tmp_path: Path) -> None:
    processes = [_sleeper(tmp_path) for _ in range(3)]
    records = [ProcessRecord.of(f"p{i}", p, tmp_path / "out.log") for i, p in enumerate(processes)]
    assert stop_all(records, timeout_s=5) == []
    assert not any(r.alive() for r in records)


def test_wait_for_port_fails_fast_with_the_log_when_the_process_exits(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    process = spawn(["sh", "-c", "echo boom-from-child; exit 3"], log)
    started = time.monotonic()
    with pytest.raises(ProcessStartError, match=r"exited with code 3(.|\n)*boom-from-child"):
        wait_for_port("127.0.0.1", free_port(), timeout_s=20, process=process, log_path=log)
    assert time.monotonic() - started < 5


def test_detached_process_outlives_its_parent(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from reviews_mtl.stack.processes import spawn; "
        f"p = spawn(['sleep', '30'], Path({str(tmp_path / 'out.log')!r}), detach=True); print(p.pid)"
    )
    pid = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    try:
        assert is_alive(pid), "the detached child died with its parent"
    finally:
        assert stop_pid(pid, timeout_s=5)


def test_die_with_parent_child_goes_when_the_parent_is_killed(tmp_path: Path) -> None:
    code = (
        "import time; from pathlib import Path; from reviews_mtl.stack.processes import spawn; "
        f"p = spawn(['sleep', '30'], Path({str(tmp_path / 'out.log')!r}), die_with_parent=True); "
        "print(p.pid, flush=True); time.sleep(30)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert is_alive(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while is_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(child)


def test_state_round_trip_and_clear(tmp_path: Path) -> None:
    record = ProcessRecord("kafka", 12345, 678, ("tansu", "broker"), str(tmp_path / "kafka.log"))
    state = StackState(
        bootstrap_servers="127.0.0.1:1",
        redis_url="redis://127.0.0.1:2/0",
        kafka_port=1,
        redis_port=2,
        partitions=6,
        broker="tansu",
        topics=("reviews", "reviews.enriched", "reviews.dlq"),
        processes={"kafka": record},
    )
    save_state(tmp_path, state)
    assert load_state(tmp_path) == state
    assert (tmp_path / "kafka.pid").read_text().strip() == "12345"
    assert json.loads((tmp_path / "stack.json").read_text())["bootstrap_servers"] == "127.0.0.1:1"
    clear_state(tmp_path)
    assert load_state(tmp_path) is None
    assert not (tmp_path / "kafka.pid").exists()


def test_apache_kafka_config_has_a_static_quorum_of_all_nodes(tmp_path: Path) -> None:
    props = ApacheKafkaCluster(tmp_path, 3).properties(2)
    voters = props["controller.quorum.voters"].split(",")
    assert [v.split("@")[0] for v in voters] == ["1", "2", "3"]
    assert props["node.id"] == "2"
    assert props["process.roles"] == "broker,controller"
    assert props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert len(random_cluster_id()) == 22
    assert jars_dir("9.9.9").parts[-2:] == ("9.9.9", "libs")


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 16 bytes whose URL-safe base64 starts with "-" (0xf8 >> 2 == 62), then ordinary ones.
    values = iter([bytes([0xF8]) + bytes(15), bytes(16)])
    monkeypatch.setattr("reviews_mtl.stack.apache_kafka.uuid.uuid4", lambda: type("U", (), {"bytes": next(values)})())
    assert not random_cluster_id().startswith("-")
