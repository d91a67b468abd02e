"""Batch prediction over a JSONL or CSV file: one output line per input row, errors included.

Each input row needs ``review_id`` and ``text`` (``title`` is used when present, as in training). A row
that cannot be read or lacks a field becomes ``{"review_id": ..., "line": N, "error": "..."}`` and the
run goes on.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from reviews_mtl.contracts import model_input
from reviews_mtl.model.predictor import Predictor

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InputRow:
    line: int
    review_id: str | None
    text: str | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PredictSummary:
    rows: int
    predicted: int
    errors: int


def _row_from_object(line: int, obj: Any) -> InputRow:
    if not isinstance(obj, dict):
        return InputRow(line, None, None, f"expected an object, got {type(obj).__name__}")
    rid = obj.get("review_id")
    review_id = str(rid) if rid is not None and str(rid).strip() else None
    text = obj.get("text")
    if review_id is None:
        return InputRow(line, None, None, "review_id is missing or empty")
    if not isinstance(text, str) or not text.strip():
        return InputRow(line, review_id, None, "text is missing or empty")
    title = obj.get("title")
    return InputRow(line, review_id, model_input(title if isinstance(title, str) and title.strip() else None, text))


def read_rows(path: Path) -> Iterator[InputRow]:
    """Rows of a ``.jsonl``/``.json`` (one object per line) or ``.csv`` (header row) file."""
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh), start=2):
                yield _row_from_object(i, row)
        return
    with path.open(encoding="utf-8", errors="replace") as fh:
        for i, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield InputRow(i, None, None, f"invalid JSON: {exc.msg}")
                continue
            yield _row_from_object(i, obj)


def _flush(predictor: Predictor, rows: list[InputRow], out: IO[str]) -> int:
    good = [r for r in rows if r.error is None]
    predictions = iter(predictor.predict([r.text or "" for r in good]))
    for row in rows:
        if row.error is not None:
            out.write(json.dumps({"review_id": row.review_id, "line": row.line, "error": row.error}) + "\n")
            continue
        pred = next(predictions)
        record = {"review_id": row.review_id, **pred.model_dump(mode="json")}
        out.write(json.dumps(record) + "\n")
    return len(good)


def predict_file(predictor: Predictor, input_path: Path, output_path: Path, chunk: int = 512) -> PredictSummary:
    total = predicted = 0
    buffer: list[InputRow] = []
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("w", encoding="utf-8") as out:
        for row in read_rows(input_path):
            buffer.append(row)
            total += 1
            if len(buffer) >= chunk:
                predicted += _flush(predictor, buffer, out)
                buffer = []
        if buffer:
            predicted += _flush(predictor, buffer, out)
    summary = PredictSummary(total, predicted, total - predicted)
    logger.info("predicted %d of %d rows (%d errors) into %s", predicted, total, summary.errors, output_path)
    return summary
