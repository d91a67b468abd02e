"""The Dockerfiles and .dockerignore, checked by parsing (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from reviews_mtl.settings import ConsumerSettings
from reviews_mtl.settings import env_names as settings_env_names

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
IMAGES = ("Dockerfile.worker", "Dockerfile.gpu-worker", "Dockerfile.trainer")
OUR_PREFIXES = ("KAFKA_", "REDIS_", "REVIEWS_")


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = (DOCKER / name).read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            result.append((keyword.upper(), " ".join(args.split())))
    return result


def args_of(name: str, keyword: str) -> list[str]:
    return [args for kw, args in instructions(name) if kw == keyword]


def env_names(name: str) -> set[str]:
    return {m for args in args_of(name, "ENV") for m in re.findall(r"([A-Z_][A-Z0-9_]*)=", args)}


def pip_installs(name: str) -> list[str]:
    return [cmd for run in args_of(name, "RUN") for cmd in run.split("&&") if "pip install" in cmd]


def test_instruction_parser() -> None:
    assert ("USER", "10001") in instructions("Dockerfile.worker")
    assert all(kw.isupper() and kw.isalpha() for kw, _ in instructions("Dockerfile.worker"))


def test_worker_is_python_slim_and_installs_base_dependencies_and_the_api_only() -> None:
    (base,) = args_of("Dockerfile.worker", "FROM")
    assert re.fullmatch(r"python:3\.1\d-slim(-\w+)?", base)
    (install,) = pip_installs("Dockerfile.worker")
    assert install.split() == ["pip", "install", '"/src[api]"']  # the read API's FastAPI, no other extra
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith(("torch", "transformers")) for dep in project["optional-dependencies"]["api"])
    assert "torch" not in install
    # And the build refuses an image where torch arrived anyway, through some dependency.
    assert "! pip show torch" in " ".join(args_of("Dockerfile.worker", "RUN"))


def test_base_dependencies_have_no_torch() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert not names & {"torch", "transformers", "onnx", "onnxscript"}
    assert {"onnxruntime", "tokenizers"} <= names


@pytest.mark.parametrize("name", ["Dockerfile.gpu-worker", "Dockerfile.trainer"])
def test_gpu_and_trainer_images_use_cuda_pytorch_and_the_train_extra(name: str) -> None:
    (base,) = args_of(name, "FROM")
    assert base.startswith("pytorch/pytorch:") and "cuda" in base
    (install,) = pip_installs(name)
    assert "/src[train]" in install
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("torch") for dep in project["optional-dependencies"]["train"])


@pytest.mark.parametrize("name", IMAGES)
def test_images_run_as_a_non_root_user(name: str) -> None:
    users = args_of(name, "USER")
    assert users, "no USER: the container would run as root"
    assert users[-1] not in ("root", "0")


@pytest.mark.parametrize("name", IMAGES)
def test_images_copy_the_packages_that_exist(name: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    sources = {src for args in args_of(name, "COPY") for src in args.split()[:-1]}
    assert packages <= sources
    for src in sources:
        assert (ROOT / src).exists(), src


@pytest.mark.parametrize("name", IMAGES)
def test_image_env_names_are_settings_fields(name: str) -> None:
    ours = {n for n in env_names(name) if n.startswith(OUR_PREFIXES)}
    assert ours - settings_env_names() == set()


@pytest.mark.parametrize("name", ["Dockerfile.worker", "Dockerfile.gpu-worker"])
def test_workers_expose_the_metrics_port_and_consume(name: str) -> None:
    assert args_of(name, "EXPOSE") == [str(ConsumerSettings().metrics_port)]
    assert json.loads(args_of(name, "ENTRYPOINT")[-1]) == ["reviews-mtl"]
    assert json.loads(args_of(name, "CMD")[-1]) == ["consume"]


def test_runtimes_match_the_hardware() -> None:
    def runtime(name: str) -> str:
        match: str
        (match,) = [m for args in args_of(name, "ENV") for m in re.findall(r"REVIEWS_CONSUMER_RUNTIME=(\S+)", args)]
        return match

    assert runtime("Dockerfile.worker") == "onnx-int8"
    assert runtime("Dockerfile.gpu-worker") == "torch"


def test_trainer_writes_the_artifact_under_models() -> None:
    command = json.loads(args_of("Dockerfile.trainer", "CMD")[-1])
    assert command[0] == "train"
    assert command[command.index("--output") + 1].startswith("/models/")
    assert "/models" in args_of("Dockerfile.trainer", "VOLUME")[-1]


def test_dockerignore_keeps_local_state_out_and_sources_in() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "artifacts", "**/__pycache__", ".mypy_cache", ".pytest_cache"} <= patterns
    copied = {src for name in IMAGES for args in args_of(name, "COPY") for src in args.split()[:-1]}
    assert copied.isdisjoint(patterns)
