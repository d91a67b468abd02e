"""int8 graphs of an exported model, and the rule that picks the one an artifact ships.

Start here: :func:`quantize_per_token` rewrites ``model.onnx`` so that every encoder ``MatMul`` with a weight
runs in int8 with **per-token** activation scales (each token row quantized by its own absolute maximum)
and per-channel weight scales. Each row's result depends on that row alone, so a review's prediction is the
same in any batch (ONNX Runtime's dynamic quantization scales activations per tensor, over the whole batch
and its padding: one review's rating moved by 0.07 with its batch-mates). :func:`variants` lists the
candidates, most quantized first: every projection int8, then the FFN output projection kept fp32 in the
lowest 1, 2, … layers, then in all layers, then the attention output too. :mod:`reviews_mtl.training.export_rule`
scores each on validation and ships the first that loses no more than the rule allows.

For the report only (never shipped: not batch-invariant or less accurate): :func:`quantize_dynamic_per_tensor`
(ONNX Runtime's dynamic quantization, the former default) and :func:`quantize_static_qdq` (calibrated static
scales, QDQ format).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_LAYER = re.compile(r"layer\.(\d+)/")
# Projection kinds by node-name fragment (BERT/MiniLM names; DistilBERT's in the second position).
FFN_OUT = ("/output/dense/", "/ffn/lin2/")
ATTENTION_OUT = ("/attention/output/dense/", "/attention/out_lin/")


@dataclass(frozen=True)
class Variant:
    """One int8 candidate: which projections stay fp32 (``fp32_ffn_out_layers``; ``fp32_attention_out``)."""

    name: str
    fp32_ffn_out_layers: tuple[int, ...] = ()
    fp32_attention_out: bool = False
    quantize: bool = True  # False: the fp32 graph itself (when no int8 graph meets the rule)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fp32_ffn_out_layers": list(self.fp32_ffn_out_layers),
            "fp32_attention_out": self.fp32_attention_out,
            "quantized": self.quantize,
        }


def variants(n_layers: int) -> list[Variant]:
    """Candidates in the order the rule tries them: most int8 (fastest) first."""
    out = [Variant("int8-all")]
    for k in range(1, n_layers):
        out.append(Variant(f"int8-ffn-out-fp32-layers-0-{k - 1}", tuple(range(k))))
    out.append(Variant("int8-ffn-out-fp32", tuple(range(n_layers))))
    out.append(Variant("int8-ffn-and-attention-out-fp32", tuple(range(n_layers)), fp32_attention_out=True))
    out.append(Variant("fp32", quantize=False))
    return out


def _kind(node_name: str) -> str:
    if any(p in node_name for p in ATTENTION_OUT):
        return "attention_out"
    if any(p in node_name for p in FFN_OUT) and "/attention/" not in node_name:
        return "ffn_out"
    return "other"


def _layer(node_name: str) -> int | None:
    match = _LAYER.search(node_name)
    return int(match.group(1)) if match else None


def keeps_fp32(node_name: str, variant: Variant) -> bool:
    kind = _kind(node_name)
    if kind == "attention_out":
        return variant.fp32_attention_out
    if kind == "ffn_out":
        return _layer(node_name) in variant.fp32_ffn_out_layers
    return False


def encoder_layers(onnx_path: Path) -> int:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    layers = {layer for n in graph.node if (layer := _layer(n.name)) is not None}
    return max(layers) + 1 if layers else 0


def quantize_per_token(source: Path, target: Path, variant: Variant) -> Path:
    """Rewrite each weighted ``MatMul`` (not kept fp32 by ``variant``) as per-token int8 × per-channel int8.

    For X (…, K) and W (K, N): ``s_x = max|x_row| / 127`` per row, ``x_q = round(x / s_x) + 128`` as uint8,
    ``W_q = round(W / s_w)`` as int8 with ``s_w = max|W_col| / 127`` per output column; then
    ``MatMulInteger(x_q, W_q, 128, 0)`` (exact in int32) × ``s_x`` × ``s_w``. No scale spans two rows.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    shared = "qpt_shared"
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(127.0, dtype=np.float32), f"{shared}/q127"),
            numpy_helper.from_array(np.array(1e-8, dtype=np.float32), f"{shared}/eps"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), f"{shared}/zero"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), f"{shared}/one"),
            numpy_helper.from_array(np.array(128.0, dtype=np.float32), f"{shared}/offset"),
            numpy_helper.from_array(np.array(128, dtype=np.uint8), f"{shared}/x_zero0"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{shared}/last_axis"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), f"{shared}/start0"),
        ]
    )
    row_shapes: dict[int, str] = {}

    def rows_shape(k: int) -> str:
        """The name of a (-1, k) shape constant: X (…, k) as rows."""
        if k not in row_shapes:
            row_shapes[k] = f"{shared}/rows{k}"
            graph.initializer.append(numpy_helper.from_array(np.array([-1, k], dtype=np.int64), row_shapes[k]))
        return row_shapes[k]

    new_nodes = []
    quantized = 0
    dropped: set[str] = set()
    for node in graph.node:
        w_name = node.input[1] if node.op_type == "MatMul" and len(node.input) == 2 else ""
        w = weights.get(w_name)
        if w is None or len(w.dims) != 2 or keeps_fp32(node.name, variant):
            new_nodes.append(node)
            continue
        quantized += 1
        p = f"qpt{quantized}"
        weight = numpy_helper.to_array(w).astype(np.float32)  # (K, N)
        w_scale = np.maximum(np.abs(weight).max(axis=0), 1e-8) / 127.0  # (N,)
        w_q = np.clip(np.rint(weight / w_scale), -127, 127).astype(np.int8)
        graph.initializer.extend(
            [
                numpy_helper.from_array(w_q, f"{p}/w_q"),
                numpy_helper.from_array(np.zeros(w_q.shape[1], dtype=np.int8), f"{p}/w_zero"),
                numpy_helper.from_array(w_scale.astype(np.float32), f"{p}/w_scale"),
            ]
        )
        if consumers.get(w_name, 0) <= 1:
            dropped.add(w_name)
        x = node.input[0]
        # X (..., K) as rows (M, K); one scale per row; int8 symmetric (zero point 0) so one QuantizeLinear
        # does divide, round, saturate and cast; MatMulInteger is exact in int32; then the two scales.
        new_nodes += [
            helper.make_node("Shape", [x], [f"{p}/x_shape"], name=f"{p}/Shape"),
            helper.make_node("Reshape", [x, rows_shape(w_q.shape[0])], [f"{p}/x2"], name=f"{p}/Rows"),
            helper.make_node("Abs", [f"{p}/x2"], [f"{p}/abs"], name=f"{p}/Abs"),
            helper.make_node("ReduceMax", [f"{p}/abs", f"{shared}/last_axis"], [f"{p}/amax"], name=f"{p}/ReduceMax",
                             keepdims=0),
            helper.make_node("Max", [f"{p}/amax", f"{shared}/eps"], [f"{p}/amax_eps"], name=f"{p}/Max"),
            helper.make_node("Div", [f"{p}/amax_eps", f"{shared}/q127"], [f"{p}/x_scale"], name=f"{p}/Scale"),
            helper.make_node("Mul", [f"{p}/x_scale", f"{shared}/zero"], [f"{p}/zero_f"], name=f"{p}/ZeroF"),
            helper.make_node("Add", [f"{p}/zero_f", f"{shared}/offset"], [f"{p}/zero_o"], name=f"{p}/ZeroO"),
            helper.make_node("Cast", [f"{p}/zero_o"], [f"{p}/x_zero"], name=f"{p}/Zero", to=TensorProto.UINT8),
            helper.make_node("QuantizeLinear", [f"{p}/x2", f"{p}/x_scale", f"{p}/x_zero"], [f"{p}/x_q"],
                             name=f"{p}/Quantize", axis=0),
            # (x_q - 128) · W_q · s_w in one kernel (ONNX Runtime's contrib op), then the row scale.
            helper.make_node("MatMulIntegerToFloat",
                             [f"{p}/x_q", f"{p}/w_q", f"{shared}/one", f"{p}/w_scale", f"{shared}/x_zero0",
                              f"{p}/w_zero"],
                             [f"{p}/y_col"], name=f"{p}/MatMulIntegerToFloat", domain="com.microsoft"),
            helper.make_node("Unsqueeze", [f"{p}/x_scale", f"{shared}/last_axis"], [f"{p}/x_scale_col"],
                             name=f"{p}/ScaleCol"),
            helper.make_node("Mul", [f"{p}/y_col", f"{p}/x_scale_col"], [f"{p}/y2"], name=f"{p}/RowScale"),
            helper.make_node("Slice", [f"{p}/x_shape", f"{shared}/start0", f"{shared}/last_axis"], [f"{p}/lead"],
                             name=f"{p}/Lead"),
            helper.make_node("Concat", [f"{p}/lead", f"{p}/n_out"], [f"{p}/y_shape"], name=f"{p}/OutShape", axis=0),
            helper.make_node("Reshape", [f"{p}/y2", f"{p}/y_shape"], list(node.output), name=f"{p}/Back"),
        ]
        graph.initializer.append(numpy_helper.from_array(np.array([w_q.shape[1]], dtype=np.int64), f"{p}/n_out"))
    del graph.node[:]
    graph.node.extend(new_nodes)
    keep = [t for t in graph.initializer if t.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    # Per-axis QuantizeLinear needs opset 13; ReduceMax takes its axes as an input from opset 18 on.
    model.opset_import[0].version = max(model.opset_import[0].version, 13)
    if model.opset_import[0].version < 18:
        _reduce_max_axes_attribute(graph)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(target))
    logger.info("%s: %d MatMuls int8 per token → %s", variant.name, quantized, target.name)
    return target


def _reduce_max_axes_attribute(graph: Any) -> None:
    """Before opset 18 ReduceMax takes its axes as an attribute."""
    from onnx import helper

    for node in graph.node:
        if node.op_type == "ReduceMax" and len(node.input) == 2 and node.input[1].endswith("/last_axis"):
            del node.input[1]
            node.attribute.append(helper.make_attribute("axes", [-1]))


def write_variant(source: Path, target: Path, variant: Variant) -> Path:
    """The graph of ``variant`` (a copy of the fp32 graph when it quantizes nothing)."""
    if not variant.quantize:
        import shutil

        shutil.copyfile(source, target)
        return target
    return quantize_per_token(source, target, variant)


# --- for the report: the former default and static calibration --------------------------------------------


def _quiet_quantizer() -> tuple[logging.Logger, int]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantizer logs every tensor at INFO on the root logger
    return root, level


def fp32_matmul_nodes(onnx_path: Path, variant: Variant) -> list[str]:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and keeps_fp32(n.name, variant)]


def quantize_dynamic_per_tensor(source: Path, target: Path, variant: Variant) -> Path:
    """ONNX Runtime's dynamic quantization (activation scale per tensor: depends on the batch)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root, level = _quiet_quantizer()
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            nodes_to_exclude=fp32_matmul_nodes(source, variant),
        )
    finally:
        root.setLevel(level)
    return target


def quantize_static_qdq(
    source: Path, target: Path, variant: Variant, calibration: Iterable[dict[str, np.ndarray]]
) -> Path:
    """Static int8 (QDQ): activation scales calibrated once on ``calibration`` feeds (min-max), per-channel weights."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    feeds = list(calibration)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    root, level = _quiet_quantizer()
    try:
        quantize_static(
            str(source),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=fp32_matmul_nodes(source, variant),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    finally:
        root.setLevel(level)
    return target


def calibration_feeds(batches: Sequence[Any], limit: int = 16) -> list[dict[str, np.ndarray]]:
    """ONNX feeds from :class:`~reviews_mtl.model.predictor.EncodedBatch` values (the first ``limit``)."""
    return [{"input_ids": b.input_ids, "attention_mask": b.attention_mask} for b in list(batches)[:limit]]
