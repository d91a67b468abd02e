"""The one command line: every subcommand answers --help, without loading torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reviews_mtl.cli import build_parser, main

COMMANDS = ["stack", "train", "evaluate", "predict", "produce", "consume", "backfill", "aggregates", "dlq",
            "serve-model", "bench"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_answers_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: reviews-mtl " + command in capsys.readouterr().out


def test_connection_flags_are_named_alike() -> None:
    parser = build_parser()
    for command in ("produce", "consume"):
        args = parser.parse_args([command, "--bootstrap-servers", "h:1"] + (
            ["--input", "x.jsonl"] if command == "produce" else []))
        assert args.bootstrap_servers == "h:1"
    assert parser.parse_args(["consume", "--redis-url", "redis://h:2/0"]).redis_url == "redis://h:2/0"


def test_no_command_prints_help_and_fails() -> None:
    assert main([]) == 2


def test_help_does_not_import_torch() -> None:
    code = ("import sys; from reviews_mtl.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'onnxruntime')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
