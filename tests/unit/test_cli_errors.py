"""Every CLI error is one clear line on stderr, never a traceback; what reaches a terminal is escaped."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from reviews_mtl.cli import main, run_handler
from reviews_mtl.terminal import escape_for_terminal


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_a_malformed_redis_url_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    err = _one_line_error(capsys, ["aggregates", "show", "p1", "--redis-url", "not-a-url"])
    assert "redis" in err.lower()


def test_a_port_out_of_range_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse's own one-line usage error
        main(["aggregates", "serve", "--port", "70000"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "70000" in err


def test_a_corrupt_onnx_file_is_one_line(tiny_model_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    for onnx in model.glob("*.onnx"):
        onnx.write_bytes(b"this is not a protobuf")
    reviews = tmp_path / "in.jsonl"
    reviews.write_text('{"review_id": "r1", "product_id": "p1", "text": "fine"}\n', encoding="utf-8")
    err = _one_line_error(capsys, ["predict", "--model", str(model), "--input", str(reviews),
                                   "--output", str(tmp_path / "out.jsonl")])
    assert "model" in err.lower()


def test_a_state_dir_that_cannot_be_made_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    err = _one_line_error(capsys, ["stack", "status", "--state-dir", str(blocker / "inside")])
    assert "a-file" in err or "state" in err.lower()


def test_output_piped_into_head_ends_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    def lister(args: argparse.Namespace) -> int:
        raise BrokenPipeError(32, "Broken pipe")  # what print() raises once `head` has closed the pipe

    assert run_handler(lister, argparse.Namespace(verbose=0)) == 141
    assert capsys.readouterr().err == ""


def test_an_unexpected_error_is_one_line_unless_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise KeyError("boom")

    assert run_handler(broken, argparse.Namespace(verbose=0)) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "KeyError" in err and "-v" in err
    assert run_handler(broken, argparse.Namespace(verbose=1)) == 1
    assert "Traceback" in capsys.readouterr().err


def test_control_characters_are_escaped_for_a_terminal() -> None:
    assert escape_for_terminal("p1\x1b[2J\x07") == "p1\\x1b[2J\\x07"
    assert escape_for_terminal("tab\tnew\nline") == "tab\\tnew\\nline"
    assert escape_for_terminal("café ✓") == "café ✓"
