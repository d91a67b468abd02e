"""Readers of review files: JSON lines, CSV and Parquet, validated by the consumer's own contract.

Start here: :func:`read_records` turns paths into a stream of :class:`ValidRecord` and
:class:`InvalidRecord` values, each with the file and the line (or row) it came from. Every row goes
through :func:`reviews_mtl.contracts.validate_message_object`, exactly as the worker validates a message,
so a row that the producer accepts is never dead-lettered by the consumer for its contract.

Tabular formats have no JSON types, so their cells are coerced first (see :func:`coerce_tabular_row`):
empty cells and NaN are missing, numeric strings become numbers where the contract wants numbers, and
integer ids become strings. JSON lines are taken as they are: JSON already says what type a value is.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
import sys
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal, cast

from producer.errors import InputError
from producer.records import InvalidRecord, Record, ValidRecord
from reviews_mtl.contracts import DecodeFailure, DecodeReason, Retraction, Review, validate_message_object

logger = logging.getLogger(__name__)

FileFormat = Literal["jsonl", "csv", "parquet"]
FILE_FORMATS: tuple[FileFormat, ...] = ("jsonl", "csv", "parquet")
STDIN = "-"

_SUFFIXES: dict[str, FileFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}

# Fields the contract types as numbers or booleans; every other field is a string.
_INT_FIELDS = frozenset({"rating", "schema_version"})
_FLOAT_FIELDS = frozenset({"timestamp"})
_BOOL_FIELDS = frozenset({"verified"})
_ID_FIELDS = frozenset({"review_id", "product_id", "user_id"})
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


# What a format reader yields: the 1-based line (JSONL, CSV) or row (Parquet) and the parsed object,
# or a failure when the row cannot even be parsed.
RawRow = tuple[int, object | DecodeFailure]


def detect_format(path: str | Path) -> FileFormat:
    """The format named by a file's suffix (``.gz`` is looked through); stdin is JSON lines."""
    if str(path) == STDIN:
        return "jsonl"
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise InputError(
        f"{path}: cannot tell the format from the suffix; name it .jsonl, .csv or .parquet, or pass --format"
    )


def _open_text(path: str | Path) -> IO[str]:
    if str(path) == STDIN:
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline="")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    if p.suffix.lower() == ".gz":
        return gzip.open(p, "rt", encoding="utf-8", newline="")
    return p.open(encoding="utf-8-sig", newline="")


def _open_binary(path: str | Path) -> IO[bytes]:
    if str(path) == STDIN:
        return sys.stdin.buffer
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    if p.suffix.lower() == ".gz":
        return cast(IO[bytes], gzip.open(p, "rb"))
    return p.open("rb")


def iter_jsonl(path: str | Path) -> Iterator[RawRow]:
    """One JSON object per line; blank lines are skipped but still counted. Lines are decoded one by
    one, so a line of broken UTF-8 is one invalid row, not an unreadable file."""
    fh = _open_binary(path)
    try:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark, as some editors write
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield (
                    number,
                    DecodeFailure(DecodeReason.INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}", None),
                )
                continue
            try:
                yield number, json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                yield number, DecodeFailure(DecodeReason.INVALID_JSON, f"invalid JSON: {exc}"[:300], None)
    except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
        raise InputError(f"{path}: cannot read: {exc}") from exc
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def iter_csv(path: str | Path) -> Iterator[RawRow]:
    """CSV with a header row; the line of a row is the physical line where it starts (quoted newlines
    inside a field count), so an editor jumps right to it."""
    with _open_text(path) as fh:
        reader = csv.DictReader(fh, restkey="__extra__")
        try:
            if not reader.fieldnames:
                return
            start = reader.line_num + 1
            for row in reader:
                if "__extra__" in row:
                    yield (
                        start,
                        DecodeFailure(
                            DecodeReason.INVALID_FIELD,
                            f"row has {len(reader.fieldnames) + len(row['__extra__'])} fields, "
                            f"header has {len(reader.fieldnames)}",
                            None,
                        ),
                    )
                else:
                    yield start, coerce_tabular_row(row)
                start = reader.line_num + 1
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: invalid UTF-8 near line {reader.line_num}: {exc}") from exc


def iter_parquet(path: str | Path, batch_size: int = 8192) -> Iterator[RawRow]:
    """Parquet, read in record batches so a large file never sits in memory; rows are numbered from 1."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        parquet = pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{p}: not a readable Parquet file: {exc}") from exc
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_size):
            for row in batch.to_pylist():
                number += 1
                yield number, coerce_tabular_row(row)
    except pa.ArrowException as exc:
        raise InputError(f"{p}: corrupt Parquet after row {number}: {exc}") from exc


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _to_int(value: object) -> object:
    """``"4"``, ``"4.0"`` and ``4.0`` are 4; anything else is left for the contract to reject."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return value
            return int(number) if number.is_integer() else number
    return value


def _to_float(value: object) -> object:
    if isinstance(value, datetime):
        # A naive datetime in a file is taken as UTC, the only zone that needs no guessing.
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return aware.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp()
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value  # maybe ISO-8601: the contract converts it
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _to_bool(value: object) -> object:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return value


def coerce_tabular_row(row: dict[str, Any]) -> dict[str, object]:
    """Give a CSV or Parquet row the JSON types the contract expects; missing cells are dropped."""
    out: dict[str, object] = {}
    for key, value in row.items():
        if _is_missing(value):
            continue
        name = key.strip() if isinstance(key, str) else key
        if name in _INT_FIELDS:
            out[name] = _to_int(value)
        elif name in _FLOAT_FIELDS:
            out[name] = _to_float(value)
        elif name in _BOOL_FIELDS:
            out[name] = _to_bool(value)
        elif name in _ID_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            out[name] = str(value)  # an integer column of ids is still ids
        else:
            out[name] = value
    return out


def iter_raw_rows(path: str | Path, fmt: FileFormat | None = None) -> Iterator[RawRow]:
    fmt = fmt or detect_format(path)
    if fmt == "jsonl":
        return iter_jsonl(path)
    if fmt == "csv":
        return iter_csv(path)
    if fmt == "parquet":
        return iter_parquet(path)
    raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(FILE_FORMATS)}")


def validate_rows(source: str, rows: Iterable[RawRow]) -> Iterator[Record]:
    """Validate parsed rows with the consumer's contract."""
    for line, obj in rows:
        result = obj if isinstance(obj, DecodeFailure) else validate_message_object(obj)
        if isinstance(result, DecodeFailure):
            yield InvalidRecord(source, line, result.reason, result.detail)
        else:
            yield ValidRecord(source, line, result)


def read_records(paths: Iterable[str | Path], fmt: FileFormat | None = None) -> Iterator[Record]:
    """Every row of every file, in order, as a valid or an invalid record. Raises :class:`InputError`
    for a file that cannot be read at all."""
    for path in paths:
        source = "<stdin>" if str(path) == STDIN else str(path)
        logger.debug("reading %s", source)
        yield from validate_rows(source, iter_raw_rows(path, fmt))


def validate_objects(objects: Iterable[object], source: str = "<input>") -> Iterator[Record]:
    """Validate in-memory objects (dicts, :class:`Review` or :class:`Retraction`), numbered from 1, for the library
    API."""
    for number, obj in enumerate(objects, start=1):
        if isinstance(obj, (Review, Retraction)):
            yield ValidRecord(source, number, obj)
            continue
        result = validate_message_object(obj)
        if isinstance(result, DecodeFailure):
            yield InvalidRecord(source, number, result.reason, result.detail)
        else:
            yield ValidRecord(source, number, result)
