"""The trainer: presets → data → mixed-batch multi-task training → early stopping → artifact.

Start here: :func:`train_preset` (what the CLI and :func:`~reviews_mtl.training.demo_cache.ensure_demo_model`
call) → :func:`train` (one :class:`~reviews_mtl.training.presets.TrainConfig`), which runs its steps in order:
:func:`prepare_data` (splits, tokenizer, token ids) → :func:`build_model` → :func:`fit` (epochs of
:func:`train_epoch`, each scored on validation, early stopping) → :func:`write_artifact` (weights, config,
ONNX, int8, parity) → ``metrics.json`` and the model card. AdamW with a higher learning rate for the fresh
heads than for the pretrained encoder, linear warmup then decay, gradient clipping, bf16 autocast on CUDA,
early stopping on :func:`~reviews_mtl.training.metrics.validation_score`; per-aspect thresholds are tuned
on validation and the best epoch's weights are exported.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS
from reviews_mtl.model.artifact import METRICS_FILE, TOKENIZER_FILE, ArtifactConfig
from reviews_mtl.model.modeling import HeadConfig, LossWeights, MultiTaskReviewModel, build_encoder
from reviews_mtl.model.predictor import pad, sort_and_pad
from reviews_mtl.settings import TrainSettings
from reviews_mtl.training.datasets import Datasets, MixedBatches, TaskRows, build_datasets
from reviews_mtl.training.onnx_export import (
    check_parity,
    encoder_config_dict,
    export_onnx,
    quantize_int8,
    save_tokenizer,
    save_weights,
)
from reviews_mtl.training.presets import TRAINING_CODE_VERSION, TrainConfig, get_preset, resolve_encoder
from reviews_mtl.training.scoring import SplitOutputs, score_split, tune_split_thresholds

logger = logging.getLogger(__name__)


def choose_threads(requested: int) -> int:
    """``requested`` if set, else one thread per core not already busy (by the 1-minute load average).

    On a shared CPU, OpenMP threads that wait for a busy core make each step several times slower
    (measured here: 16×64-token MiniLM step 1.4 s on one thread vs 5 s on two, under load 6).
    """
    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _tensors(rows: TaskRows, device: torch.device) -> dict[str, torch.Tensor]:
    assert rows.ids is not None
    ids, mask = pad(rows.ids)
    return {
        "input_ids": torch.from_numpy(ids).to(device),
        "attention_mask": torch.from_numpy(mask).to(device),
        "sentiment": torch.from_numpy(rows.sentiment).to(device),
        "rating": torch.from_numpy(rows.rating).to(device),
        "aspects": torch.from_numpy(rows.aspects).to(device),
        "aspect_weight": torch.from_numpy(rows.aspect_weight).to(device),
    }


@torch.inference_mode()
def predict_rows(
    model: MultiTaskReviewModel, rows: TaskRows, device: torch.device, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sentiment probs, rating, aspect probs) for tokenized rows, in row order."""
    assert rows.ids is not None
    model.eval()
    n = len(rows)
    sentiment = np.zeros((n, len(SENTIMENT_LABELS)), dtype=np.float32)
    rating = np.zeros(n, dtype=np.float32)
    aspects = np.zeros((n, len(ASPECT_NAMES)), dtype=np.float32)
    for batch in sort_and_pad(rows.ids, batch_size):
        idx = batch.positions
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(torch.from_numpy(batch.input_ids).to(device), torch.from_numpy(batch.attention_mask).to(device))
        sentiment[idx] = torch.softmax(out.sentiment_logits.float(), -1).cpu().numpy()
        rating[idx] = out.rating.float().cpu().numpy()
        aspects[idx] = torch.sigmoid(out.aspect_logits.float()).cpu().numpy()
    return sentiment, rating, aspects


def evaluate_split(
    model: MultiTaskReviewModel,
    reviews: TaskRows,
    sentences: TaskRows,
    device: torch.device,
    thresholds: dict[str, float] | None,
    batch_size: int,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Metrics on one split; tunes thresholds there when ``thresholds`` is ``None`` (validation)."""
    s_probs, s_rating, r_aspects = predict_rows(model, reviews, device, batch_size)
    _, _, a_probs = predict_rows(model, sentences, device, batch_size)
    outputs = SplitOutputs(s_probs, s_rating, a_probs, review_aspects=r_aspects)
    if thresholds is None:
        thresholds = tune_split_thresholds(outputs, reviews, sentences)
    return score_split(outputs, reviews, sentences, thresholds), thresholds


def _optimizer(model: MultiTaskReviewModel, config: TrainConfig) -> torch.optim.Optimizer:
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups: list[dict[str, Any]] = []
    for is_encoder, lr in ((True, config.learning_rate), (False, config.head_learning_rate)):
        for decay in (True, False):
            params = [
                p
                for n, p in model.named_parameters()
                if p.requires_grad
                and n.startswith("encoder.") == is_encoder
                and (not any(n.endswith(s) for s in no_decay)) == decay
            ]
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": config.weight_decay if decay else 0.0})
    return torch.optim.AdamW(groups)


def freeze_lower_layers(model: MultiTaskReviewModel, n_layers: int) -> int:
    """Freeze the embeddings and the lowest ``n_layers`` transformer layers (cheaper backward on CPU)."""
    if n_layers <= 0:
        return 0
    frozen = 0
    for name, param in model.encoder.named_parameters():
        layer = _layer_index(name)
        if "embeddings" in name or (layer is not None and layer < n_layers):
            param.requires_grad_(False)
            frozen += 1
    return frozen


def _layer_index(name: str) -> int | None:
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in {"layer", "layers"} and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def _class_weights(rows: TaskRows) -> tuple[float, ...]:
    counts = np.bincount(rows.sentiment[rows.sentiment >= 0], minlength=len(SENTIMENT_LABELS)).astype(float)
    counts = np.maximum(counts, 1.0)
    weights = counts.sum() / (len(counts) * counts)
    return tuple(float(w) for w in np.sqrt(weights))  # square root: balanced without over-weighting neutral


def prepare_data(config: TrainConfig, data_dir: Path | None, output_dir: Path, encoder_path: str) -> Datasets:
    """Step 1: the splits as label rows, and the encoder's tokenizer saved into the artifact and run on them."""
    from tokenizers import Tokenizer

    data = build_datasets(
        data_dir,
        weak=config.weak_labels,
        weak_weight=config.weak_weight,
        max_train_reviews=config.max_train_reviews,
        max_eval_reviews=config.max_val_reviews,
        max_eval_sentences=config.max_eval_sentences,
        seed=config.seed,
    )
    save_tokenizer(encoder_path, output_dir)
    tokenizer = Tokenizer.from_file(str(output_dir / TOKENIZER_FILE))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=config.max_length)
    for rows in (
        data.train_reviews,
        data.train_aspects,
        data.validation_reviews,
        data.validation_sentences,
        data.test_reviews,
        data.test_sentences,
    ):
        rows.ids = [e.ids for e in tokenizer.encode_batch(rows.texts)] if len(rows) else []
    return data


def build_model(config: TrainConfig, data: Datasets, encoder_path: str, device: torch.device) -> MultiTaskReviewModel:
    """Step 2: the pretrained encoder with fresh heads, its lowest layers frozen as the preset asks."""
    encoder, hidden = build_encoder(encoder_path)
    heads = HeadConfig(
        dropout=config.dropout,
        sentiment_class_weights=_class_weights(data.train_reviews) if config.class_weights else None,
        loss_weights=LossWeights(config.loss_sentiment, config.loss_rating, config.loss_aspects),
    )
    model = MultiTaskReviewModel(encoder, hidden, heads).to(device)
    frozen = freeze_lower_layers(model, config.freeze_layers)
    if frozen:
        logger.info("froze the embeddings and the lowest %d encoder layers (%d tensors)", config.freeze_layers, frozen)
    return model


@dataclass
class Optimization:
    """The optimizer, its learning-rate schedule and the batches it steps over."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    batches: Iterator[tuple[TaskRows, TaskRows]]
    steps_per_epoch: int


def _optimization(config: TrainConfig, model: MultiTaskReviewModel, data: Datasets) -> Optimization:
    steps_per_epoch = config.steps_per_epoch or math.ceil(
        len(data.train_reviews) / max(1, round(config.batch_size * (1 - config.aspect_share)))
    )
    total_steps = steps_per_epoch * config.max_epochs
    warmup = max(1, int(config.warmup_ratio * total_steps))
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / warmup) * max(0.0, (total_steps - step) / max(1, total_steps - warmup))
            if step >= warmup
            else (step + 1) / warmup
        ),
    )
    batches = iter(
        MixedBatches(
            data.train_reviews,
            data.train_aspects,
            config.batch_size,
            config.aspect_share,
            config.seed,
            human_share=config.human_share,
        )
    )
    return Optimization(optimizer, scheduler, batches, steps_per_epoch)


def _over_budget(config: TrainConfig, started: float) -> bool:
    return bool(config.time_budget_s) and time.time() - started > config.time_budget_s


def train_epoch(
    model: MultiTaskReviewModel,
    opt: Optimization,
    config: TrainConfig,
    device: torch.device,
    epoch: int,
    started: float,
) -> tuple[int, dict[str, float]]:
    """One epoch of optimizer steps (cut short by the time budget); returns (steps done, summed losses)."""
    model.train()
    sums = {"loss": 0.0, "sentiment": 0.0, "rating": 0.0, "aspects": 0.0}
    disable_bar = TrainSettings().no_progress  # env REVIEWS_NO_PROGRESS
    bar = tqdm(
        range(opt.steps_per_epoch), desc=f"epoch {epoch}/{config.max_epochs}", disable=disable_bar, mininterval=2.0
    )
    steps_done = 0
    for _ in bar:
        if _over_budget(config, started):
            logger.info("time budget of %.0fs reached inside epoch %d", config.time_budget_s, epoch)
            break
        steps_done += 1
        review_part, aspect_part = next(opt.batches)
        tensors = _tensors(TaskRows.concat([review_part, aspect_part]), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(**tensors)
        assert out.loss is not None
        opt.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.optimizer.step()
        opt.scheduler.step()
        sums["loss"] += float(out.loss.detach())
        for k, v in out.losses.items():
            sums[k] += float(v.detach())
        bar.set_postfix(loss=f"{sums['loss'] / (bar.n + 1):.3f}", refresh=False)
    return steps_done, sums


@dataclass
class FitResult:
    """The best epoch (by validation score): its number, thresholds and validation metrics; every epoch's record."""

    best_epoch: int = 0
    thresholds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ASPECT_NAMES, 0.5))
    validation: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    steps_per_epoch: int = 0


def fit(
    model: MultiTaskReviewModel, data: Datasets, config: TrainConfig, device: torch.device, started: float
) -> FitResult:
    """Step 3: epochs until early stopping or the time budget; leaves the best epoch's weights in ``model``."""
    opt = _optimization(config, model, data)
    result = FitResult(steps_per_epoch=opt.steps_per_epoch)
    best_score, best_state, stale = -1.0, None, 0
    for epoch in range(1, config.max_epochs + 1):
        epoch_start = time.time()
        steps_done, sums = train_epoch(model, opt, config, device, epoch, started)
        train_s = time.time() - epoch_start
        val, thresholds = evaluate_split(
            model, data.validation_reviews, data.validation_sentences, device, None, config.eval_batch_size
        )
        record = {
            "epoch": epoch,
            "train_seconds": round(train_s, 1),
            "eval_seconds": round(time.time() - epoch_start - train_s, 1),
            "steps": steps_done,
            "train_loss": {k: v / max(1, steps_done) for k, v in sums.items()},
            "validation_score": val["score"],
            "validation_sentiment_macro_f1": val["sentiment"]["macro_f1"],
            "validation_rating_mae": val["rating"]["mae"],
            "validation_aspect_macro_f1": val["aspects"]["macro_f1"],
        }
        result.history.append(record)
        logger.info("epoch %d: %s", epoch, json.dumps(record))
        if val["score"] > best_score:
            best_score, stale = val["score"], 0
            result.best_epoch, result.thresholds, result.validation = epoch, thresholds, val
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
            if stale >= config.patience:
                logger.info("early stop after epoch %d (best %d)", epoch, result.best_epoch)
                break
        if _over_budget(config, started):
            logger.info("time budget of %.0fs reached after epoch %d", config.time_budget_s, epoch)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


def write_artifact(
    model: MultiTaskReviewModel, config: TrainConfig, data: Datasets, thresholds: dict[str, float], output_dir: Path
) -> tuple[str, dict[str, Any]]:
    """Step 4: weights, ``config.json``, ONNX fp32 and int8, and their parity with PyTorch; (version, parity)."""
    save_weights(model, output_dir)
    version = f"{config.preset}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    ArtifactConfig(
        model_name=f"reviews-mtl-{config.preset}",
        model_version=version,
        preset=config.preset,
        encoder=config.encoder,
        encoder_config=encoder_config_dict(model),
        heads=model.heads.to_dict(),
        max_length=config.max_length,
        aspect_thresholds=thresholds,
        training={k: v for k, v in asdict(config).items() if k != "extra"},
        training_code_version=TRAINING_CODE_VERSION,
        data_source=data.data_source,
    ).write(output_dir)
    export_onnx(model, output_dir)
    quantize_int8(output_dir)
    # Validation rows first; runtime agreement needs no labels, so a small split (the project's own sample)
    # is topped up with training texts to keep the check meaningful.
    parity_texts = [*data.validation_reviews.texts, *data.train_reviews.texts][: config.parity_rows]
    return version, check_parity(output_dir, parity_texts, model=model)


def train(config: TrainConfig, data_dir: Path | None, output_dir: Path) -> dict[str, Any]:
    """Train one model and write the artifact into ``output_dir``; returns the metrics written."""
    from reviews_mtl.training.baseline import run_baseline
    from reviews_mtl.training.report import write_model_card

    started = time.time()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    torch.set_num_threads(choose_threads(config.threads))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder_path = resolve_encoder(config.encoder)
    logger.info(
        "training preset %s on %s, encoder %s, %d torch threads",
        config.preset,
        device,
        encoder_path,
        torch.get_num_threads(),
    )
    data = prepare_data(config, data_dir, output_dir, encoder_path)
    model = build_model(config, data, encoder_path, device)
    fitted = fit(model, data, config, device, started)
    train_seconds = time.time() - started
    test, _ = evaluate_split(
        model, data.test_reviews, data.test_sentences, device, fitted.thresholds, config.eval_batch_size
    )
    version, parity = write_artifact(model.cpu(), config, data, fitted.thresholds, output_dir)
    metrics = {
        "preset": config.preset,
        "model_version": version,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - started, 1),
        "best_epoch": fitted.best_epoch,
        "epochs_run": len(fitted.history),
        "steps_per_epoch": fitted.steps_per_epoch,
        "history": fitted.history,
        "counts": data.counts,
        "validation": fitted.validation,
        "test": test,
        "baseline": run_baseline(data),
        "parity": parity,
    }
    (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    write_model_card(output_dir, metrics, ArtifactConfig.read(output_dir))
    logger.info("artifact written to %s in %.0fs", output_dir, time.time() - started)
    return metrics


def train_preset(
    preset: str,
    data_dir: Path | None,
    output_dir: Path,
    **overrides: Any,
) -> dict[str, Any]:
    """Train a preset, with optional field overrides (``None`` values are ignored)."""
    config = get_preset(preset).with_overrides(**overrides)
    return train(config, data_dir, output_dir)
