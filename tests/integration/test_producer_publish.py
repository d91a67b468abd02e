"""The producer against a real broker: keyed records on the right topic, delivery failures reported."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from producer import Publisher, publish
from producer.errors import InvalidRecordError
from producer.publisher import publish_records
from producer.readers import validate_objects
from reviews_mtl.contracts import Review, decode_review
from reviews_mtl.kafka import end_offsets, read_topic
from reviews_mtl.settings import KafkaSettings, ProducerSettings

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


def _reviews(n: int, products: int = 7) -> list[dict[str, object]]:
    return [
        {"review_id": f"r{i}", "product_id": f"p{i % products}", "text": f"review number {i}", "rating": 1 + i % 5}
        for i in range(n)
    ]


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "reviews_mtl.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _closed_port() -> int:
    """A loopback port nothing listens on (bound then released: connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.smoke
def test_publish_keys_by_product_and_lands_on_topic(
    kafka_settings: KafkaSettings, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(4)
    summary = publish(_reviews(120), kafka=kafka_settings, topic=topic)

    assert summary.ok and (summary.sent, summary.invalid, summary.failed) == (120, 0, 0)
    messages = read_topic(kafka_settings, topic, timeout_s=60)
    assert len(messages) == 120
    partitions: dict[str, set[int]] = defaultdict(set)
    for m in messages:
        review = decode_review(m.value())
        assert isinstance(review, Review), review
        key = m.key()
        assert key is not None and key.decode() == review.product_id
        partitions[review.product_id].add(m.partition() or 0)
    assert all(len(ps) == 1 for ps in partitions.values()), partitions  # one product, one partition
    assert len({p for ps in partitions.values() for p in ps}) > 1  # and products spread over partitions
    # Per product, reviews keep their send order.
    by_product: dict[str, list[int]] = defaultdict(list)
    for m in messages:
        review = decode_review(m.value())
        assert isinstance(review, Review)
        by_product[review.product_id].append(int(review.review_id[1:]))
    assert all(ids == sorted(ids) for ids in by_product.values())


def test_publish_skips_invalid_and_fails_fast_when_asked(
    kafka_settings: KafkaSettings, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(1)
    rows: list[dict[str, object]] = [*_reviews(3), {"review_id": "bad", "product_id": "p", "text": ""}]

    with pytest.raises(InvalidRecordError, match="1 invalid record"):
        publish(rows, kafka=kafka_settings, topic=topic, on_invalid="fail")
    assert sum(end_offsets(kafka_settings, topic).values()) == 0  # nothing at all was sent

    summary = publish(rows, kafka=kafka_settings, topic=topic, on_invalid="skip")
    assert (summary.sent, summary.invalid, summary.failed) == (3, 1, 0)
    assert summary.invalid_records[0].line == 4
    assert len(read_topic(kafka_settings, topic, timeout_s=60)) == 3


def test_cli_publishes_all_three_formats(
    kafka_settings: KafkaSettings, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = unique_topic(3)
    rows = _reviews(30)
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows[:10]) + "{broken\n", encoding="utf-8")
    csv_path = tmp_path / "b.csv"
    csv_path.write_text(
        "review_id,product_id,text,rating\n"
        + "".join(f"{r['review_id']},{r['product_id']},{r['text']},{r['rating']}\n" for r in rows[10:20])
        + "bad-csv,p1,,3\n",
        encoding="utf-8",
    )
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist(rows[20:30]), parquet)

    result = _cli(
        "produce",
        "--input",
        str(jsonl),
        str(csv_path),
        str(parquet),
        "--topic",
        topic,
        "--bootstrap-servers",
        kafka_settings.bootstrap_servers,
        "--json",
        "--no-progress",
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["sent"], summary["invalid"], summary["failed"]) == (30, 2, 0)
    assert {(r["source"].rsplit("/", 1)[-1], r["line"], r["reason"]) for r in summary["invalid_records"]} == {
        ("a.jsonl", 11, "invalid_json"),
        ("b.csv", 12, "missing_text"),
    }
    ids = set()
    for m in read_topic(kafka_settings, topic, timeout_s=60):
        review = decode_review(m.value())
        assert isinstance(review, Review)
        ids.add(review.review_id)
    assert ids == {f"r{i}" for i in range(30)}


def test_cli_on_invalid_fail_sends_nothing(
    kafka_settings: KafkaSettings, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = unique_topic(1)
    path = tmp_path / "in.jsonl"
    path.write_text(
        json.dumps(_reviews(1)[0])
        + "\n"
        + json.dumps({"review_id": "x", "product_id": "p", "text": "t", "rating": 7})
        + "\n",
        encoding="utf-8",
    )
    result = _cli(
        "produce",
        "--input",
        str(path),
        "--topic",
        topic,
        "--bootstrap-servers",
        kafka_settings.bootstrap_servers,
        "--on-invalid",
        "fail",
        "--no-progress",
    )
    assert result.returncode == 1
    assert f"{path}:2: invalid_field: rating" in result.stderr
    assert "nothing sent" in result.stderr
    assert sum(end_offsets(kafka_settings, topic).values()) == 0


def test_rate_limit_paces_real_sends(kafka_settings: KafkaSettings, unique_topic: Callable[..., str]) -> None:
    topic = unique_topic(1)
    started = time.monotonic()
    summary = publish(_reviews(60), kafka=kafka_settings, topic=topic, rate=40)
    elapsed = time.monotonic() - started
    assert summary.sent == 60
    # 60 records at 40/s with a burst of 4 need at least (60 - 4) / 40 = 1.4 s.
    assert elapsed >= 1.4
    assert summary.rate <= 45


def test_delivery_failure_when_broker_is_down_is_counted(tmp_path: Path) -> None:
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{_closed_port()}")
    producer_settings = ProducerSettings(delivery_timeout_ms=1500, linger_ms=0)
    publisher = Publisher("reviews", settings, producer_settings)
    started = time.monotonic()
    summary = publish_records(validate_objects(_reviews(5)), publisher, progress=False)
    assert time.monotonic() - started < 30
    assert (summary.sent, summary.failed) == (0, 5)
    assert not summary.ok
    assert len(summary.failures) == 5
    assert all("timed out" in f.error.lower() or "timeout" in f.error.lower() for f in summary.failures), [
        f.error for f in summary.failures
    ]


def test_cli_exits_nonzero_when_broker_is_down(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _reviews(3)), encoding="utf-8")
    result = _cli(
        "produce",
        "--input",
        str(path),
        "--bootstrap-servers",
        f"127.0.0.1:{_closed_port()}",
        "--json",
        "--no-progress",
        env={"REVIEWS_PRODUCER_DELIVERY_TIMEOUT_MS": "1500"},  # set by environment, as documented
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    summary = json.loads(result.stdout)
    assert (summary["sent"], summary["failed"]) == (0, 3)
    assert "3 record(s) NOT delivered" in result.stderr
