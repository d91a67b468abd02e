"""``reviews-mtl predict`` on the tiny artifact: JSONL and CSV in, one line per row out, bad rows as errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reviews_mtl.cli import main
from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_with_bad_rows_keeps_going(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps({"review_id": "a", "text": "Works great, arrived fast."}),
                "{not json",
                json.dumps({"review_id": "b"}),
                json.dumps({"text": "no id"}),
                json.dumps(["a", "list"]),
                json.dumps({"review_id": "c", "title": "Meh", "text": "It broke after a week."}),
            ]
        )
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    code = main(
        [
            "predict",
            "--model",
            str(tiny_model_dir),
            "--input",
            str(source),
            "--output",
            str(out),
            "--runtime",
            "onnx-int8",
        ]
    )
    assert code == 0
    rows = _read(out)
    assert len(rows) == 6
    assert [r.get("review_id") for r in rows] == ["a", None, "b", None, None, "c"]
    good = [rows[0], rows[5]]
    for row in good:
        assert "error" not in row
        assert row["sentiment"]["label"] in SENTIMENT_LABELS
        assert set(row["sentiment"]["probabilities"]) == set(SENTIMENT_LABELS)
        assert 1.0 <= row["rating"] <= 5.0
        assert list(row["aspects"]) == list(ASPECT_NAMES)
        assert set(row["aspects_detected"]) <= set(ASPECT_NAMES)
    assert "invalid JSON" in rows[1]["error"] and rows[1]["line"] == 2
    assert "text" in rows[2]["error"]
    assert "review_id" in rows[3]["error"]
    assert "object" in rows[4]["error"]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"rows": 6, "predicted": 2, "errors": 4}


def test_csv_input(tiny_model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text('review_id,text\nx1,"Nice, cheap and sturdy"\nx2,\nx3,Terrible support\n')
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(source), "--output", str(out)]) == 0
    rows = _read(out)
    assert [r["review_id"] for r in rows] == ["x1", "x2", "x3"]
    assert "error" in rows[1] and "error" not in rows[0] and "error" not in rows[2]


def test_missing_model_or_input_is_an_error_code(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"review_id": "a", "text": "x"}) + "\n")
    assert main(["predict", "--model", str(tmp_path), "--input", str(source), "--output", str(tmp_path / "o")]) == 2
    assert main(["predict", "--model", str(tmp_path), "--input", str(tmp_path / "nope"), "--output", "o"]) == 2


def test_help_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys; from reviews_mtl.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
