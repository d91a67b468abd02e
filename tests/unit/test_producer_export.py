"""Export: reviews from a data directory (or any file) out as contract JSONL that the readers accept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producer.cli import register
from producer.export import reviews_from_data, with_timestamps, write_jsonl
from producer.readers import read_records
from producer.records import ValidRecord
from reviews_mtl.contracts import Review


def _alexa_dir(root: Path) -> Path:
    (root / "amazon_alexa").mkdir(parents=True)
    rows = ["rating\tdate\tvariation\tverified_reviews\tfeedback"]
    rows += [f"{1 + i % 5}\t31-Jul-18\tBlack\tReview text number {i}, works fine\t1" for i in range(12)]
    rows.append("5\t31-Jul-18\tBlack\t\t1")  # empty text: dropped by the pool
    (root / "amazon_alexa" / "amazon_alexa.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_export_from_data_dir_round_trips_through_readers(tmp_path: Path) -> None:
    data = _alexa_dir(tmp_path / "data")
    reviews = reviews_from_data(data, limit=10)
    assert len(reviews) == 10 and all(isinstance(r, Review) for r in reviews)
    out = tmp_path / "out" / "reviews.jsonl"
    count = write_jsonl(with_timestamps(reviews, len(reviews), end=1_767_225_600.0, span_s=90.0), out)
    assert count == 10

    records = list(read_records([out]))
    assert all(isinstance(r, ValidRecord) for r in records)
    back = [r.review for r in records if isinstance(r, ValidRecord) and isinstance(r.review, Review)]
    assert [r.review_id for r in back] == [r.review_id for r in reviews]
    assert [r.rating for r in back] == [r.rating for r in reviews]
    stamps = [r.timestamp or 0.0 for r in back]
    assert stamps[0] == pytest.approx(1_767_225_600.0 - 90.0) and stamps[-1] == pytest.approx(1_767_225_600.0)
    assert stamps == sorted(stamps)
    assert not (tmp_path / "out" / "reviews.jsonl.tmp").exists()
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert "title" not in first  # None fields are left out, as on the wire


def test_existing_timestamps_are_kept(tmp_path: Path) -> None:
    reviews = [
        Review(review_id="a", product_id="p", text="t", timestamp=5.0),
        Review(review_id="b", product_id="p", text="t"),
    ]
    stamped = list(with_timestamps(reviews, 2, end=100.0, span_s=10.0))
    assert [r.timestamp for r in stamped] == [5.0, 100.0]


def test_shuffle_is_seeded(tmp_path: Path) -> None:
    data = _alexa_dir(tmp_path / "data")
    a = [r.review_id for r in reviews_from_data(data, shuffle=True, seed=3)]
    b = [r.review_id for r in reviews_from_data(data, shuffle=True, seed=3)]
    c = [r.review_id for r in reviews_from_data(data)]
    assert a == b and sorted(a) == sorted(c) and a != c


def _run_cli(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["produce", *argv])
    return int(args.func(args))


def test_cli_export_from_file_reports_invalid_and_fills_timestamps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.csv"
    src.write_text("review_id,product_id,text\nr1,p1,hello\nr2,,no product\nr3,p2,world\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert _run_cli(["--input", str(src), "--export-jsonl", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["sent"], summary["invalid"]) == (2, 1)
    assert summary["invalid_records"][0]["line"] == 3
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["review_id"] for r in rows] == ["r1", "r3"] and all("timestamp" in r for r in rows)


def test_cli_export_fail_mode_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"review_id": "r1", "product_id": "p", "text": "ok"}\n{"review_id": "r2"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert _run_cli(["--input", str(src), "--export-jsonl", str(out), "--on-invalid", "fail"]) == 1
    assert not out.exists()
    assert f"{src}:2: missing_product_id" in capsys.readouterr().err


def test_cli_options_come_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    src = tmp_path / "in.jsonl"
    monkeypatch.setenv("REVIEWS_PRODUCER_INPUT", str(src))
    monkeypatch.setenv("REVIEWS_PRODUCER_LIMIT", "7")
    monkeypatch.setenv("REVIEWS_PRODUCER_STAMP_NOW", "true")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["produce"])
    assert args.input == [str(src)] and args.limit == 7 and args.stamp_now is True
    flag_wins = parser.parse_args(["produce", "--limit", "3"])
    assert flag_wins.limit == 3


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run_cli([]) == 2
    assert "exactly one of --input" in capsys.readouterr().err
    assert _run_cli(["--input", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert _run_cli(["--input", str(tmp_path / "x.txt")]) == 2
    assert "--format" in capsys.readouterr().err
