"""Readers: every file type validated by the consumer's contract, bad rows reported with line and reason."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from producer.errors import InputError
from producer.readers import coerce_tabular_row, detect_format, read_records, validate_objects
from producer.records import InvalidRecord, Record, ValidRecord
from reviews_mtl.contracts import MAX_TEXT_BYTES, DecodeReason, Review


def _reviews(valid: list[ValidRecord]) -> list[Review]:
    out = [v.review for v in valid]
    assert all(isinstance(r, Review) for r in out)
    return [r for r in out if isinstance(r, Review)]


def _split(records: list[Record]) -> tuple[list[ValidRecord], list[InvalidRecord]]:
    valid = [r for r in records if isinstance(r, ValidRecord)]
    invalid = [r for r in records if isinstance(r, InvalidRecord)]
    return valid, invalid


def _by_line(invalid: list[InvalidRecord]) -> dict[int, InvalidRecord]:
    return {r.line: r for r in invalid}


# -- JSONL ------------------------------------------------------------------------------------------


def test_jsonl_valid_and_invalid_rows_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"review_id": "r1", "product_id": "p1", "text": "Works well", "rating": 5}),  # 1
        "",  # 2: blank, skipped but counted
        "{not json",  # 3
        json.dumps([1, 2]),  # 4
        json.dumps({"review_id": "r2", "text": "no product"}),  # 5
        json.dumps({"review_id": "r3", "product_id": "p1", "text": "  "}),  # 6
        json.dumps({"review_id": "r4", "product_id": "p1", "text": "ok", "rating": 9}),  # 7
        json.dumps({"review_id": "r5", "product_id": 7, "text": "ok"}),  # 8
        json.dumps({"review_id": "r6", "product_id": "p2", "text": "x" * (MAX_TEXT_BYTES + 1)}),  # 9
        json.dumps({"review_id": "r7", "product_id": "p2", "text": "fine", "timestamp": "2024-05-01T10:00:00Z"}),
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"review_id": "r8", "text": "\xff\xfe"}\n')

    valid, invalid = _split(list(read_records([path])))

    assert [v.review.review_id for v in valid] == ["r1", "r7"]
    assert [v.line for v in valid] == [1, 10]
    assert valid[1].review.timestamp == datetime(2024, 5, 1, 10, tzinfo=timezone.utc).timestamp()
    got = {line: r.reason for line, r in _by_line(invalid).items()}
    assert got == {
        3: DecodeReason.INVALID_JSON,
        4: DecodeReason.NOT_AN_OBJECT,
        5: DecodeReason.MISSING_PRODUCT_ID,
        6: DecodeReason.EMPTY_TEXT,
        7: DecodeReason.INVALID_FIELD,
        8: DecodeReason.WRONG_TYPE,
        9: DecodeReason.TEXT_TOO_LONG,
        11: DecodeReason.INVALID_UTF8,
    }
    rating = _by_line(invalid)[7]
    assert "rating" in rating.detail
    assert str(rating).startswith(f"{path}:7: invalid_field: rating")


def test_jsonl_gzip_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b"\xef\xbb\xbf" + json.dumps({"review_id": "a", "product_id": "p", "text": "t"}).encode() + b"\n")
    valid, invalid = _split(list(read_records([path])))
    assert [v.review.review_id for v in valid] == ["a"] and not invalid


# -- CSV --------------------------------------------------------------------------------------------


def test_csv_coerces_types_and_reports_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        "review_id,product_id,text,rating,verified,timestamp,title\n"  # line 1
        "r1,p1,Great,4,true,1714557600,\n"  # 2: empty title is missing
        'r2,p1,"two\nlines",4.0,no,2024-05-01T10:00:00Z,T\n'  # 3-4: quoted newline
        "r3,p2,Bad rating,4.5,,,\n"  # 5
        "r4,p2,,3,,,\n"  # 6: empty text is missing
        "r5,p2,Too many,3,,,,extra\n"  # 7
        "r6,,No product,3,,,\n"  # 8
        "r7,p3,Stars,six,,,\n"  # 9
        "r8,p3,Nine,9,,,\n",  # 10
        encoding="utf-8",
    )
    valid, invalid = _split(list(read_records([path])))

    assert [(v.line, v.review.review_id) for v in valid] == [(2, "r1"), (3, "r2")]
    r1, r2 = _reviews(valid)
    assert r1.rating == 4 and r1.verified is True and r1.timestamp == 1714557600.0 and r1.title is None
    assert r2.rating == 4 and r2.verified is False and r2.text == "two\nlines" and r2.title == "T"
    got = {line: r.reason for line, r in _by_line(invalid).items()}
    assert got == {
        5: DecodeReason.WRONG_TYPE,  # 4.5 stars is not an integer rating
        6: DecodeReason.MISSING_TEXT,
        7: DecodeReason.INVALID_FIELD,
        8: DecodeReason.MISSING_PRODUCT_ID,
        9: DecodeReason.WRONG_TYPE,
        10: DecodeReason.INVALID_FIELD,
    }
    assert "header has 7" in _by_line(invalid)[7].detail


def test_csv_missing_required_column(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,product_id,text\n1,p,hello\n", encoding="utf-8")
    (bad,) = list(read_records([path]))
    assert isinstance(bad, InvalidRecord)
    assert (bad.line, bad.reason) == (2, DecodeReason.MISSING_REVIEW_ID)


# -- Parquet ----------------------------------------------------------------------------------------


def test_parquet_coerces_types_and_reports_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    table = pa.table(
        {
            "review_id": ["r1", "r2", "r3", "r4", "r5"],
            "product_id": pa.array([101, 102, None, 104, 105], pa.int64()),  # integer ids become strings
            "text": ["good", "bad", "no product", "", "nan rating"],
            "rating": pa.array([5.0, 1.0, 3.0, 2.0, float("nan")], pa.float64()),  # pandas writes floats
            "timestamp": pa.array(
                [datetime(2024, 5, 1, 10), None, None, None, None], pa.timestamp("ms")
            ),  # naive -> UTC
            "verified": pa.array([True, None, None, None, False]),
        }
    )
    pq.write_table(table, path, row_group_size=2)

    valid, invalid = _split(list(read_records([path])))

    assert [(v.line, v.review.review_id) for v in valid] == [(1, "r1"), (2, "r2"), (5, "r5")]
    r1 = _reviews(valid)[0]
    assert r1.product_id == "101" and r1.rating == 5
    assert r1.timestamp == datetime(2024, 5, 1, 10, tzinfo=timezone.utc).timestamp()
    assert _reviews(valid)[2].rating is None  # NaN is missing, not a value
    assert _reviews(valid)[2].verified is False
    got = {line: r.reason for line, r in _by_line(invalid).items()}
    assert got == {3: DecodeReason.MISSING_PRODUCT_ID, 4: DecodeReason.MISSING_TEXT}


def test_parquet_written_by_pandas(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    path = tmp_path / "in.parquet"
    pd.DataFrame(
        {"review_id": ["a", "b"], "product_id": ["p", "p"], "text": ["x", "y"], "rating": [4, None]}
    ).to_parquet(path)
    valid, invalid = _split(list(read_records([path])))
    assert [r.rating for r in _reviews(valid)] == [4, None] and not invalid


def test_corrupt_parquet_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        list(read_records([path]))


# -- formats and in-memory objects ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.jsonl.gz", "jsonl"),
        ("a.CSV", "csv"),
        ("a.csv.gz", "csv"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("-", "jsonl"),
    ],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--format"):
        detect_format(tmp_path / "reviews.txt")
    with pytest.raises(InputError, match="no such file"):
        list(read_records([tmp_path / "absent.jsonl"]))


def test_format_override(tmp_path: Path) -> None:
    path = tmp_path / "reviews.txt"
    path.write_text("review_id,product_id,text\nr,p,t\n", encoding="utf-8")
    (rec,) = list(read_records([path], "csv"))
    assert isinstance(rec, ValidRecord)


def test_coerce_tabular_row_edge_cases() -> None:
    row = coerce_tabular_row(
        {"rating": " 3 ", "schema_version": "1", "verified": "1", "user_id": 12, "text": 5, "title": float("nan")}
    )
    assert row == {"rating": 3, "schema_version": 1, "verified": True, "user_id": "12", "text": 5}


def test_validate_objects_accepts_reviews_and_dicts() -> None:
    review = Review(review_id="r", product_id="p", text="t")
    records = list(validate_objects([review, {"review_id": "x"}, {"review_id": "y", "product_id": "p", "text": "t"}]))
    assert isinstance(records[0], ValidRecord) and records[0].review is review
    assert isinstance(records[1], InvalidRecord) and records[1].line == 2
    assert isinstance(records[2], ValidRecord)
