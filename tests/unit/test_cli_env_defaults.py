"""One owner for environment defaults: every variable a CLI flag reads is a field of :mod:`reviews_mtl.settings`.

Set the variable, build the parser, and the flag's default follows it; unset, the documented default holds;
every ``env NAME`` that a command's --help names is in :func:`reviews_mtl.settings.env_names` (the list the
deployment tests check manifests against); and no CLI module reads ``os.environ`` itself.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

import pytest

from reviews_mtl.cli import build_parser
from reviews_mtl.demo import build_parser as build_demo_parser
from reviews_mtl.settings import env_names

ROOT = Path(__file__).resolve().parents[2]
EVALUATE = ["evaluate", "--model", "m"]
PREDICT = ["predict", "--model", "m", "--input", "in.jsonl", "--output", "out.jsonl"]
PREDICT_NO_MODEL = ["predict", "--input", "in.jsonl", "--output", "out.jsonl"]
SERVE = ["aggregates", "serve"]

# (argv, variable, value, argparse dest, expected default)
CASES: list[tuple[list[str], str, str, str, Any]] = [
    (["train"], "REVIEWS_TRAIN_PRESET", "full", "preset", "full"),
    (["train"], "REVIEWS_DATA_DIR", "/data", "data", Path("/data")),
    (["train"], "REVIEWS_MODEL_OUTPUT", "/out", "output", Path("/out")),
    (["train"], "REVIEWS_ENCODER", "bert-base-uncased", "encoder", "bert-base-uncased"),
    (["train"], "REVIEWS_TRAIN_EPOCHS", "3", "epochs", 3),
    (["train"], "REVIEWS_TRAIN_BATCH_SIZE", "16", "batch_size", 16),
    (["train"], "REVIEWS_MAX_LENGTH", "64", "max_length", 64),
    (["train"], "REVIEWS_TRAIN_STEPS_PER_EPOCH", "5", "steps_per_epoch", 5),
    (["train"], "REVIEWS_TRAIN_MAX_REVIEWS", "100", "max_train_reviews", 100),
    (["train"], "REVIEWS_TRAIN_TIME_BUDGET", "30.5", "time_budget", 30.5),
    (["train"], "REVIEWS_TORCH_THREADS", "2", "threads", 2),
    (["train"], "REVIEWS_SEED", "7", "seed", 7),
    (["evaluate"], "REVIEWS_MODEL_DIR", "/model", "model", Path("/model")),
    (EVALUATE, "REVIEWS_DATA_DIR", "/data", "data", Path("/data")),
    (EVALUATE, "REVIEWS_EVAL_MAX_REVIEWS", "9", "max_reviews", 9),
    (EVALUATE, "REVIEWS_RUNTIME", "onnx-fp32", "runtime", "onnx-fp32"),
    (PREDICT_NO_MODEL, "REVIEWS_MODEL_DIR", "/model", "model", Path("/model")),
    (PREDICT, "REVIEWS_RUNTIME", "torch", "runtime", "torch"),
    (PREDICT, "REVIEWS_INTRA_OP_THREADS", "3", "threads", 3),
    (["produce"], "REVIEWS_PRODUCER_INPUT", f"a.jsonl{os.pathsep}b.csv", "input", ["a.jsonl", "b.csv"]),
    (["produce"], "REVIEWS_PRODUCER_FROM_DATA", "/data", "from_data", Path("/data")),
    (["produce"], "REVIEWS_PRODUCER_SOURCES", f"amazon{os.pathsep}yelp", "sources", ["amazon", "yelp"]),
    (["produce"], "REVIEWS_PRODUCER_FORMAT", "csv", "format", "csv"),
    (["produce"], "REVIEWS_PRODUCER_LIMIT", "7", "limit", 7),
    (["produce"], "REVIEWS_PRODUCER_SHUFFLE", "1", "shuffle", True),
    (["produce"], "REVIEWS_PRODUCER_SEED", "5", "seed", 5),
    (["produce"], "REVIEWS_PRODUCER_EXPORT_JSONL", "/out.jsonl", "export_jsonl", Path("/out.jsonl")),
    (["produce"], "REVIEWS_PRODUCER_JSON", "true", "json", True),
    (["produce"], "REVIEWS_PRODUCER_NO_PROGRESS", "yes", "no_progress", True),
    (["produce"], "REVIEWS_PRODUCER_STAMP_NOW", "on", "stamp_now", True),
    (SERVE, "REVIEWS_API_HOST", "0.0.0.0", "host", "0.0.0.0"),
    (SERVE, "REVIEWS_API_PORT", "9000", "port", 9000),
]

DEMO_CASES: list[tuple[str, str, str, Any]] = [
    ("REVIEWS_DEMO_REVIEWS", "500", "reviews", 500),
    ("REVIEWS_DEMO_REPLICAS", "3", "replicas", 3),
    ("REVIEWS_DEMO_MODEL", "/model", "model", Path("/model")),
    ("REVIEWS_DATA_DIR", "/data", "data", Path("/data")),
]

# Unset, the defaults the help texts and README document.
UNSET: list[tuple[list[str], str, Any]] = [
    (["train"], "preset", "demo"),
    (["train"], "data", None),
    (["train"], "epochs", None),
    (["train"], "time_budget", None),
    (EVALUATE, "runtime", "onnx-int8"),
    (EVALUATE, "max_reviews", 0),
    (PREDICT, "runtime", "auto"),
    (PREDICT, "threads", 0),
    (["produce"], "input", None),
    (["produce"], "seed", 0),
    (["produce"], "shuffle", False),
    (["produce"], "json", False),
    (SERVE, "host", "127.0.0.1"),
    (SERVE, "port", 8080),
]

# The commands whose flags this rule covers (serve-model, bench and the consumer own their own).
COMMANDS = ("train", "evaluate", "predict", "produce", "aggregates")
CLI_MODULES = (
    "reviews_mtl/training/cli.py",
    "reviews_mtl/training/train.py",
    "producer/cli.py",
    "reviews_mtl/demo.py",
    "reviews_mtl/aggregates/cli.py",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "REDIS_", "REVIEWS_")):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(("argv", "variable", "value", "dest", "expected"), CASES, ids=[c[1] for c in CASES])
def test_each_cli_default_follows_its_variable(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], variable: str, value: str, dest: str, expected: Any
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(build_parser().parse_args(argv), dest) == expected
    assert variable in env_names()


@pytest.mark.parametrize(("variable", "value", "dest", "expected"), DEMO_CASES, ids=[c[0] for c in DEMO_CASES])
def test_demo_defaults_follow_their_variables(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, dest: str, expected: Any
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(build_demo_parser().parse_args([]), dest) == expected
    assert variable in env_names()


@pytest.mark.parametrize(("argv", "dest", "expected"), UNSET, ids=[f"{c[0][0]}-{c[1]}" for c in UNSET])
def test_unset_variables_leave_the_documented_defaults(argv: list[str], dest: str, expected: Any) -> None:
    assert getattr(build_parser().parse_args(argv), dest) == expected


def test_demo_defaults_unset() -> None:
    args = build_demo_parser().parse_args([])
    assert (args.reviews, args.replicas, args.model, args.data) == (4000, 2, None, None)


def test_a_flag_wins_over_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEWS_TRAIN_EPOCHS", "3")
    monkeypatch.setenv("REVIEWS_API_PORT", "9000")
    assert build_parser().parse_args(["train", "--epochs", "1"]).epochs == 1
    assert build_parser().parse_args([*SERVE, "--port", "81"]).port == 81


def test_model_dir_from_the_environment_makes_model_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate"])
    monkeypatch.setenv("REVIEWS_MODEL_DIR", "/model")
    assert build_parser().parse_args(["evaluate"]).model == Path("/model")


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEWS_TRAIN_EPOCHS", "")
    monkeypatch.setenv("REVIEWS_PRODUCER_INPUT", "")
    monkeypatch.setenv("REVIEWS_DATA_DIR", "")
    assert build_parser().parse_args(["train"]).epochs is None
    assert build_parser().parse_args(["train"]).data is None
    assert build_parser().parse_args(["produce"]).input is None


def test_no_progress_is_a_training_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from reviews_mtl.settings import TrainSettings

    assert TrainSettings().no_progress is False
    monkeypatch.setenv("REVIEWS_NO_PROGRESS", "1")
    assert TrainSettings().no_progress is True
    assert "REVIEWS_NO_PROGRESS" in env_names()


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    found = []
    for action in parser._actions:
        found.append(action)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_actions(sub))
    return found


def test_every_variable_a_help_names_is_a_settings_field() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parsers = [sub.choices[name] for name in COMMANDS] + [build_demo_parser()]
    named = {
        name
        for parser in parsers
        for action in _actions(parser)
        for name in re.findall(r"\b(?:KAFKA|REDIS|REVIEWS)_[A-Z0-9_]*[A-Z0-9]\b", action.help or "")
    }
    assert len(named) > 30
    assert named - env_names() == set()


@pytest.mark.parametrize("path", CLI_MODULES)
def test_cli_modules_read_no_environment_variable_themselves(path: str) -> None:
    source = (ROOT / path).read_text()
    assert not re.findall(r"os\.environ\.get|os\.getenv|os\.environ\[", source)


def test_readme_configuration_table_names_settings_fields() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`((?:KAFKA|REDIS|REVIEWS)_[A-Z0-9_]*[A-Z0-9])`", table))
    assert {"REVIEWS_DATA_DIR", "REVIEWS_API_PORT", "REVIEWS_TRAIN_PRESET"} <= named
    assert named - env_names() == set()


def test_an_invalid_variable_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reviews_mtl.cli import main
    from reviews_mtl.demo import main as demo_main

    monkeypatch.setenv("REVIEWS_API_PORT", "99999")
    assert main(["aggregates", "serve"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "reviews-mtl: error: invalid environment variable REVIEWS_API_PORT: Input should be less than or equal to 65535"
    ]
    monkeypatch.delenv("REVIEWS_API_PORT")
    monkeypatch.setenv("REVIEWS_TORCH_THREADS", "many")
    assert main(["train"]) == 2
    assert "invalid environment variable REVIEWS_TORCH_THREADS:" in capsys.readouterr().err
    monkeypatch.setenv("REVIEWS_DEMO_REPLICAS", "0")
    assert demo_main([]) == 2
    assert "invalid environment variable REVIEWS_DEMO_REPLICAS:" in capsys.readouterr().err
