"""``reviews-mtl dlq`` against the real broker and Redis, with a real worker.

The DLQ holds what a worker dead-lettered (bad input) plus dead letters of a bug that is fixed now
(``internal_error`` with valid originals), one of them cut to fit, and one from an aborted transaction. A
re-drive of ``--reason internal_error`` sends exactly the fixed subset back to the input topic once, the
worker enriches each once, a second re-drive sends nothing, and a dry run sends nothing.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest

from reviews_mtl.cli import main
from reviews_mtl.contracts import (
    DLQ_HEADER_ORIGINAL_SHA256,
    DLQ_HEADER_ORIGINAL_SIZE,
    DeadLetter,
    Review,
    SourceCoordinates,
)
from reviews_mtl.dlq.redrive import HEADER_REDRIVEN_FROM
from reviews_mtl.kafka import make_producer, read_topic
from reviews_mtl.settings import KafkaSettings
from tests.integration.consumer_harness import Pipeline, keyed, make_reviews

pytestmark = pytest.mark.integration


def _dead_letter(pipe: Pipeline, offset: int, raw: bytes, reason: str = "internal_error") -> DeadLetter:
    return DeadLetter(error_class="InternalError", reason=reason, detail="tokenizer failed (the bug since fixed)",
                      source=SourceCoordinates(topic=pipe.input, partition=0, offset=offset), raw=raw)


def _write_fixed_bug_dead_letters(pipe: Pipeline, kafka: KafkaSettings) -> list[Review]:
    fixed = [Review(review_id=f"fix{i}", product_id="p-fix", text=f"Fixed now, works great #{i}") for i in range(3)]
    producer = make_producer(kafka)
    for i, review in enumerate(fixed):
        dl = _dead_letter(pipe, 1000 + i, review.to_bytes())
        producer.produce(pipe.dlq, key=b"p-fix", value=dl.raw, headers=list[Any](dl.headers()))
    big = Review(review_id="fix-big", product_id="p-fix", text="long " * 2000).to_bytes()
    cut = _dead_letter(pipe, 1003, big)
    cut_headers: list[Any] = [*cut.headers(), (DLQ_HEADER_ORIGINAL_SIZE, str(len(big)).encode()),
                              (DLQ_HEADER_ORIGINAL_SHA256, b"0" * 64)]
    producer.produce(pipe.dlq, key=b"p-fix", value=big[:1024], headers=cut_headers)
    assert producer.flush(30) == 0
    # A dead letter of a batch whose transaction aborted: read_committed never shows it.
    tx = make_producer(kafka, transactional_id=f"dlq-test-{uuid.uuid4().hex[:8]}")
    tx.init_transactions(30)
    tx.begin_transaction()
    ghost = _dead_letter(pipe, 1004, Review(review_id="ghost", product_id="p-fix", text="never").to_bytes())
    tx.produce(pipe.dlq, key=b"p-fix", value=ghost.raw, headers=list[Any](ghost.headers()))
    tx.flush(30)
    tx.abort_transaction(30)
    return fixed


def _cli(capsys: pytest.CaptureFixture[str], pipe: Pipeline, *args: str) -> tuple[int, str, str]:
    code = main(["dlq", *args, "--dlq", pipe.dlq, "--bootstrap-servers", pipe.kafka.bootstrap_servers,
                 "--redis-url", pipe.redis_url])
    out, err = capsys.readouterr()
    return code, out, err


def _input_records(pipe: Pipeline) -> list[tuple[bytes, bytes, dict[str, Any]]]:
    return [(m.key() or b"", m.value() or b"", dict(cast(list[Any], m.headers() or [])))
            for m in read_topic(pipe.kafka, pipe.input, timeout_s=30)]


@pytest.mark.timeout(420)
def test_redrive_sends_the_fixed_subset_once_and_the_worker_enriches_it_once(
    kafka_settings: KafkaSettings, redis_url: str, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipe = Pipeline(kafka_settings, redis_url, tiny_model_dir, partitions=2)
    monkeypatch.setenv("REDIS_KEY_PREFIX", pipe.prefix)
    reviews = make_reviews(6)
    bad = [(b"p1", b"\x1b[31m{not json"), (b"p2", json.dumps({"review_id": "b1", "product_id": "p2"}).encode())]
    pipe.produce([*keyed(reviews), *bad])
    fixed = _write_fixed_bug_dead_letters(pipe, kafka_settings)
    pipe.start_worker()
    try:
        pipe.wait_until(lambda: pipe.store.totals().get("reviews", 0) >= 6 and len(pipe.dead_letters()) >= 6,
                        180, "the worker's first pass")

        code, out, err = _cli(capsys, pipe, "list", "--json")
        assert code == 0, err
        listed = json.loads(out)
        assert listed["total"] == 6 and listed["redriven"] == 0  # the aborted one is not there
        counts = {r["reason"]: (r["count"], r["cut"]) for r in listed["reasons"]}
        assert counts == {"internal_error": (4, 1), "invalid_json": (1, 0), "missing_text": (1, 0)}

        code, out, err = _cli(capsys, pipe, "show", "--reason", "invalid_json")
        assert code == 0, err
        assert "\\x1b[31m{not json" in out and "\x1b" not in out  # control characters escaped
        assert f"source     {pipe.input}:" in out and "reason     invalid_json (DecodeError)" in out

        before = len(_input_records(pipe))
        code, out, err = _cli(capsys, pipe, "redrive", "--reason", "internal_error", "--to", pipe.input,
                              "--dry-run")
        assert code == 0, err
        assert out.startswith("would re-drive 3 of 4 selected") and "1 cut to fit the DLQ: skipped" in out
        assert len(_input_records(pipe)) == before
        assert not pipe.store.client.exists(f"{pipe.prefix}:dlq:redriven")

        code, out, err = _cli(capsys, pipe, "redrive", "--reason", "internal_error", "--to", pipe.input, "--json")
        assert code == 0, err
        report = json.loads(out)
        assert sorted(report["sent"]) == [f"{pipe.input}:0:{1000 + i}" for i in range(3)]
        assert report["cut"] == [f"{pipe.input}:0:1003"] and report["already"] == []

        redriven = [r for r in _input_records(pipe) if HEADER_REDRIVEN_FROM in r[2]]
        assert sorted(v for _, v, _ in redriven) == sorted(r.to_bytes() for r in fixed)  # the originals' bytes
        assert {k for k, _, _ in redriven} == {b"p-fix"}  # the original key: the same partition as a fresh one

        pipe.wait_until(lambda: pipe.store.totals().get("reviews", 0) >= 9, 120, "the re-driven reviews")
        pipe.wait_until(lambda: len(pipe.enriched_records()) >= 9, 60, "committed enriched records")

        code, out, err = _cli(capsys, pipe, "redrive", "--reason", "internal_error", "--to", pipe.input)
        assert code == 0, err
        assert out.startswith("re-drove 0 of 4 selected") and "3 already re-driven before: skipped" in out
        assert len([r for r in _input_records(pipe) if HEADER_REDRIVEN_FROM in r[2]]) == 3

        code, out, err = _cli(capsys, pipe, "list", "--json")
        assert json.loads(out)["redriven"] == 3
    finally:
        codes = pipe.stop_all()
    assert codes == [0], pipe.tail_logs()

    ids = Counter(r["review_id"] for r in pipe.enriched_records())
    assert {f"fix{i}" for i in range(3)} <= set(ids) and max(ids.values()) == 1  # each enriched once
    assert set(ids) == {r.review_id for r in reviews} | {f"fix{i}" for i in range(3)}
    assert pipe.store.product("p-fix").review_count == 3  # type: ignore[union-attr]
    ledger = pipe.store.client.hgetall(f"{pipe.prefix}:dlq:redriven")
    assert {json.loads(v)["state"] for v in ledger.values()} == {"sent"}


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str], kafka_settings: KafkaSettings) -> None:
    assert main(["dlq", "list", "--since", "yesterday-ish"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reviews-mtl dlq list: --since 'yesterday-ish'") and "\n" not in err

    assert main(["dlq", "show", "--limit", "0"]) == 2
    assert capsys.readouterr().err.strip() == "reviews-mtl dlq show: --limit must be >= 1, got 0"

    assert main(["dlq", "redrive", "--redis-url", "redis://127.0.0.1:1/0",
                 "--bootstrap-servers", kafka_settings.bootstrap_servers]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("reviews-mtl dlq redrive: Redis unavailable") and "\n" not in err

    assert main(["dlq", "list", "--dlq", f"missing-{uuid.uuid4().hex[:6]}",
                 "--bootstrap-servers", kafka_settings.bootstrap_servers]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("reviews-mtl dlq list: cannot read missing-") and "\n" not in err
