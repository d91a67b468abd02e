"""``reviews-mtl serve-model`` refuses what it cannot serve with one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from reviews_mtl.cli import main


def test_a_directory_without_an_artifact_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve-model", "--model", str(tmp_path), "--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"reviews-mtl serve-model: cannot load {tmp_path}: ") and "\n" not in err


def test_a_bad_bound_is_one_line(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve-model", "--model", str(tiny_model_dir), "--max-batch", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reviews-mtl serve-model: --max-batch (or REVIEWS_SERVE_MAX_BATCH): ") and "\n" not in err
