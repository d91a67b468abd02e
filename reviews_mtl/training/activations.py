"""Frozen layers computed once: the hidden states after the embeddings and the lowest ``k`` encoder layers,
per row, in fp16, so that training runs only the upper layers and the heads.

Start here: :func:`compute_activations` runs the frozen part of a model over token ids (length-sorted,
no gradient, eval mode) into an :class:`ActivationStore`; :meth:`ActivationStore.batch` gathers rows back
as a padded float32 tensor and its mask. :func:`cached_activations` keeps a store on disk (``np.memmap``)
keyed by the encoder's weights, ``k`` and the token ids, so a second run on the same data skips the work.

Why: with the lower layers frozen, every epoch recomputed the same activations; on 2 CPU cores that
forward pass was most of a step. Caching trades memory (tokens × hidden × 2 bytes: about 2.5 GB for the
full pool at 128 tokens, MiniLM) for steps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from tqdm.auto import tqdm

from reviews_mtl.model.modeling import MultiTaskReviewModel, mean_pool
from reviews_mtl.model.predictor import pad, sort_and_pad
from reviews_mtl.training.threads import ThreadTuner

logger = logging.getLogger(__name__)


@dataclass
class ActivationStore:
    """Row ``i``'s hidden states are ``data[offsets[i]:offsets[i + 1]]`` (its tokens × hidden, fp16)."""

    data: npt.NDArray[np.float16]  # (total tokens, hidden)
    offsets: npt.NDArray[np.int64]  # (rows + 1,)
    layer: int  # the hidden states after this many encoder layers

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def batch(
        self, index: Sequence[int] | npt.NDArray[np.intp], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``index`` right-padded to the longest: hidden (rows, seq, hidden) float32 and mask (rows, seq)."""
        idx = np.asarray(index, dtype=np.intp)
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        width = int(max(1, (ends - starts).max(initial=1)))
        hidden = np.zeros((len(idx), width, self.data.shape[1]), dtype=np.float32)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            hidden[row, : end - start] = self.data[start:end]
            mask[row, : end - start] = 1
        return torch.from_numpy(hidden).to(device), torch.from_numpy(mask).to(device)


@torch.inference_mode()
def compute_activations(
    model: MultiTaskReviewModel,
    ids: Sequence[Sequence[int]],
    n_layers: int,
    batch_size: int = 64,
    out: npt.NDArray[np.float16] | None = None,
    desc: str = "caching activations",
    threads: ThreadTuner | None = None,
) -> ActivationStore:
    """The hidden states after ``n_layers`` layers for every row of ``ids`` (into ``out`` when given); the
    thread count measured as it goes (``threads``; on a shared machine one thread can be 3× faster than two)."""
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    hidden_size = int(model.encoder.config.hidden_size)  # type: ignore[union-attr,arg-type]
    data = out if out is not None else np.zeros((int(offsets[-1]), hidden_size), dtype=np.float16)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batches = sort_and_pad(ids, batch_size)
    from reviews_mtl.settings import TrainSettings

    tuner = threads or ThreadTuner()
    for batch in tqdm(batches, desc=desc, disable=TrainSettings().no_progress, mininterval=5.0):
        tuner.before_step()
        started = time.perf_counter()
        hidden = model.lower(
            torch.from_numpy(batch.input_ids).to(device), torch.from_numpy(batch.attention_mask).to(device), n_layers
        )
        values = hidden.float().cpu().numpy().astype(np.float16)  # (batch, seq, hidden)
        tuner.after_step(time.perf_counter() - started, batch.input_ids.size)
        for row, position in enumerate(batch.positions.tolist()):
            start, end = offsets[position], offsets[position + 1]
            data[start:end] = values[row, : end - start]
    model.train(was_training)
    return ActivationStore(data, offsets, n_layers)


def activation_key(model: MultiTaskReviewModel, ids: Sequence[Sequence[int]], n_layers: int) -> str:
    """A hash of the frozen part's weights, ``n_layers`` and the token ids: what the activations depend on."""
    digest = hashlib.sha256(f"layers={n_layers}".encode())
    for name, tensor in model.encoder.state_dict().items():
        layer = _layer_of(name)
        if "embeddings" in name or (layer is not None and layer < n_layers):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().float().numpy().tobytes()[:4096])
            digest.update(str(float(tensor.detach().float().sum())).encode())
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    digest.update(lengths.tobytes())
    flat = np.fromiter((t for row in ids for t in row), dtype=np.int64, count=int(lengths.sum()))
    digest.update(flat.tobytes())
    return digest.hexdigest()[:20]


def _layer_of(name: str) -> int | None:
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part == "layer" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def cached_activations(
    model: MultiTaskReviewModel,
    ids: Sequence[Sequence[int]],
    n_layers: int,
    cache_dir: Path | None,
    batch_size: int = 64,
    desc: str = "caching activations",
    threads: ThreadTuner | None = None,
) -> ActivationStore:
    """:func:`compute_activations`, kept in ``cache_dir`` (memory-mapped) when one is given and reused."""
    if cache_dir is None:
        return compute_activations(model, ids, n_layers, batch_size, desc=desc, threads=threads)
    key = activation_key(model, ids, n_layers)
    folder = Path(cache_dir) / key
    meta_path, data_path, offsets_path = folder / "meta.json", folder / "data.f16", folder / "offsets.npy"
    hidden_size = int(model.encoder.config.hidden_size)  # type: ignore[union-attr,arg-type]
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        offsets = np.load(offsets_path)
        data = np.memmap(data_path, dtype=np.float16, mode="r", shape=(int(meta["tokens"]), int(meta["hidden"])))
        logger.info("reusing cached activations %s (%d rows, %.0f MB)", folder, len(offsets) - 1, data.nbytes / 1e6)
        return ActivationStore(data, offsets, n_layers)  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    tokens = sum(len(x) for x in ids)
    out = np.memmap(data_path, dtype=np.float16, mode="w+", shape=(max(1, tokens), hidden_size))
    store = compute_activations(model, ids, n_layers, batch_size, out=out, desc=desc, threads=threads)
    out.flush()
    np.save(offsets_path, store.offsets)
    meta_path.write_text(json.dumps({"tokens": max(1, tokens), "hidden": hidden_size, "layers": n_layers}))
    return store


def pooled_features(
    model: MultiTaskReviewModel, store: ActivationStore, batch_size: int, device: torch.device
) -> torch.Tensor:
    """Mean-pooled final hidden states of every row (no gradient): the input of a linear probe."""
    was_training = model.training
    model.eval()
    lengths = np.diff(store.offsets)
    order = np.argsort(lengths, kind="stable")
    hidden_size = store.data.shape[1]
    pooled = torch.zeros(len(store), hidden_size)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            hidden, mask = store.batch(idx, device)
            pooled[torch.from_numpy(idx)] = mean_pool(model.upper(hidden, mask, store.layer), mask).float().cpu()
    model.train(was_training)
    return pooled


def tensors_from_ids(ids: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    input_ids, mask = pad(ids)
    return torch.from_numpy(input_ids).to(device), torch.from_numpy(mask).to(device)
