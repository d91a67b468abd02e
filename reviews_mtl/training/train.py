"""The trainer: presets → data → mixed-batch multi-task training → early stopping → artifact.

Start here: :func:`train_preset` (what the CLI and :func:`~reviews_mtl.training.demo_cache.ensure_demo_model`
call) → :func:`train` (one :class:`~reviews_mtl.training.presets.TrainConfig`), which runs its steps in order:
:func:`prepare_data` (splits, tokenizer, token ids) → :func:`build_model` → :func:`cache_features` (the frozen
layers' activations, once) → :func:`fit` (optional linear probe, then epochs of :func:`train_epoch`, each
scored on validation with calibrations and thresholds tuned there, early stopping) → :func:`write_artifact`
(weights, config, ONNX, the int8 export rule) → ``metrics.json`` and the model card. AdamW with a higher
learning rate for the fresh heads than for the pretrained encoder, linear warmup then decay, gradient
clipping, bf16 autocast on CUDA; torch's thread count is measured on real steps (:mod:`.threads`).
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS
from reviews_mtl.model.artifact import METRICS_FILE, TOKENIZER_FILE, ArtifactConfig
from reviews_mtl.model.modeling import (
    HeadConfig,
    LossWeights,
    MultiTaskOutput,
    MultiTaskReviewModel,
    SoftTargets,
    build_encoder,
    distillation_losses,
)
from reviews_mtl.model.predictor import encode_ids, pad, sort_and_pad
from reviews_mtl.settings import TrainSettings
from reviews_mtl.training.activations import ActivationStore, cached_activations, pooled_features
from reviews_mtl.training.calibration import RawOutputs, served_outputs, star_prior, tune_calibration
from reviews_mtl.training.datasets import Datasets, MixedBatches, TaskRows, build_datasets
from reviews_mtl.training.export_rule import Int8Rule, choose_int8
from reviews_mtl.training.onnx_export import (
    check_parity,
    encoder_config_dict,
    export_onnx,
    save_tokenizer,
    save_weights,
)
from reviews_mtl.training.presets import TRAINING_CODE_VERSION, TrainConfig, get_preset, resolve_encoder
from reviews_mtl.training.scoring import SplitOutputs, score_split, tune_split_thresholds
from reviews_mtl.training.threads import ThreadTuner

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- data ------------------------------------------------------------------------------------------------


def _class_weights(rows: TaskRows) -> tuple[float, ...]:
    counts = np.bincount(rows.sentiment[rows.sentiment >= 0], minlength=len(SENTIMENT_LABELS)).astype(float)
    counts = np.maximum(counts, 1.0)
    weights = counts.sum() / (len(counts) * counts)
    return tuple(float(w) for w in np.sqrt(weights))  # square root: balanced without over-weighting neutral


def aspect_pos_weights(rows: TaskRows, power: float, cap: float = 10.0) -> tuple[float, ...] | None:
    """Per aspect, ``(negatives / positives) ** power`` over its labelled training cells (human ones where the
    aspect has any, else weak), at least 1 and at most ``cap``: rare aspects' positives weigh more."""
    if power <= 0:
        return None
    out = []
    for j in range(len(ASPECT_NAMES)):
        w = rows.aspect_weight[:, j]
        cells = w >= 1.0 if (w >= 1.0).any() else w > 0
        y = rows.aspects[cells, j]
        pos = float(y.sum())
        neg = float(len(y) - pos)
        out.append(float(min(cap, max(1.0, (neg / pos) ** power))) if pos > 0 else 1.0)
    return tuple(round(v, 3) for v in out)


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
    for rows in _all_rows(data):
        rows.ids = encode_ids(tokenizer, rows.texts, config.max_length, config.truncation) if len(rows) else []
    if config.soft_labels:
        from reviews_mtl.training.distill import attach_soft_labels

        attach_soft_labels(data, Path(config.soft_labels))
    return data


def _all_rows(data: Datasets) -> tuple[TaskRows, ...]:
    return (
        data.train_reviews,
        data.train_aspects,
        data.validation_reviews,
        data.validation_sentences,
        data.test_reviews,
        data.test_sentences,
    )


# --- the model -------------------------------------------------------------------------------------------


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


def build_model(config: TrainConfig, data: Datasets, encoder_path: str, device: torch.device) -> MultiTaskReviewModel:
    """Step 2: the pretrained encoder with fresh heads, its lowest layers frozen as the preset asks."""
    encoder, hidden = build_encoder(encoder_path)
    heads = HeadConfig(
        dropout=config.dropout,
        sentiment_class_weights=_class_weights(data.train_reviews) if config.class_weights else None,
        loss_weights=LossWeights(config.loss_sentiment, config.loss_rating, config.loss_aspects),
        rating_head=config.rating_head,
        expectation_mse=config.expectation_mse,
        aspect_pos_weight=aspect_pos_weights(data.train_aspects, config.aspect_pos_weight),
    )
    model = MultiTaskReviewModel(encoder, hidden, heads).to(device)
    frozen = freeze_lower_layers(model, config.freeze_layers)
    if frozen:
        logger.info("froze the embeddings and the lowest %d encoder layers (%d tensors)", config.freeze_layers, frozen)
    return model


# --- cached activations of the frozen layers ---------------------------------------------------------------


@dataclass
class Features:
    """The frozen layers' activations of every split's rows (same order as the rows)."""

    layer: int
    stores: dict[str, ActivationStore]
    seconds: float = 0.0

    def of(self, name: str) -> ActivationStore:
        return self.stores[name]

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.stores.values())

    def summary(self) -> dict[str, float]:
        return {"layers": self.layer, "megabytes": round(self.nbytes / 1e6, 1), "seconds": round(self.seconds, 1)}


SPLIT_NAMES = (
    "train_reviews",
    "train_aspects",
    "validation_reviews",
    "validation_sentences",
    "test_reviews",
    "test_sentences",
)


def can_cache(model: MultiTaskReviewModel, config: TrainConfig) -> bool:
    if not config.cache_activations or config.freeze_layers <= 0:
        return False
    try:
        model._bert_parts()
    except ValueError as exc:
        logger.warning("activation caching off: %s", exc)
        return False
    return True


def cache_features(
    model: MultiTaskReviewModel, data: Datasets, config: TrainConfig, device: torch.device
) -> Features | None:
    """Step 3: the hidden states after the frozen layers, computed once for every split (or ``None``)."""
    if not can_cache(model, config):
        return None
    started = time.time()
    cache_dir = Path(config.cache_dir) if config.cache_dir else None
    stores = {}
    threads = ThreadTuner(fixed=config.threads, recheck_steps=50)
    for name, rows in zip(SPLIT_NAMES, _all_rows(data), strict=True):
        assert rows.ids is not None
        stores[name] = cached_activations(
            model, rows.ids, config.freeze_layers, cache_dir, config.eval_batch_size, desc=f"caching {name}",
            threads=threads,
        )
    features = Features(config.freeze_layers, stores, time.time() - started)
    logger.info("cached the lowest %d layers' activations: %.0f MB in %.0fs", features.layer,
                features.nbytes / 1e6, features.seconds)
    return features


# --- prediction and scoring --------------------------------------------------------------------------------


@torch.inference_mode()
def predict_rows(
    model: MultiTaskReviewModel,
    rows: TaskRows,
    device: torch.device,
    batch_size: int = 64,
    store: ActivationStore | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Uncalibrated (sentiment head probs, rating, aspect probs, star probs or None), in row order."""
    assert rows.ids is not None
    model.eval()
    n = len(rows)
    sentiment = np.zeros((n, len(SENTIMENT_LABELS)), dtype=np.float32)
    rating = np.zeros(n, dtype=np.float32)
    aspects = np.zeros((n, len(ASPECT_NAMES)), dtype=np.float32)
    stars = np.zeros((n, 5), dtype=np.float32) if model.heads.has_star_distribution else None
    for batch in sort_and_pad(rows.ids, batch_size):
        idx = batch.positions
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            if store is not None:
                hidden, mask = store.batch(idx, device)
                out = model(None, mask, hidden_states=hidden, from_layer=store.layer)
            else:
                ids = torch.from_numpy(batch.input_ids).to(device)
                out = model(ids, torch.from_numpy(batch.attention_mask).to(device))
        sentiment[idx] = torch.softmax(out.sentiment_logits.float(), -1).cpu().numpy()
        rating[idx] = out.rating.float().cpu().numpy()
        aspects[idx] = torch.sigmoid(out.aspect_logits.float()).cpu().numpy()
        if stars is not None and out.star_probs is not None:
            stars[idx] = out.star_probs.float().cpu().numpy()
    return sentiment, rating, aspects, stars


def raw_outputs(
    model: MultiTaskReviewModel,
    reviews: TaskRows,
    sentences: TaskRows,
    device: torch.device,
    batch_size: int,
    review_store: ActivationStore | None = None,
    sentence_store: ActivationStore | None = None,
) -> RawOutputs:
    s_probs, s_rating, r_aspects, r_stars = predict_rows(model, reviews, device, batch_size, review_store)
    _, _, a_probs, _ = predict_rows(model, sentences, device, batch_size, sentence_store)
    return RawOutputs(s_probs, s_rating, r_aspects, a_probs, r_stars)


def score_outputs(
    raw: RawOutputs, reviews: TaskRows, sentences: TaskRows, heads: HeadConfig, thresholds: dict[str, float]
) -> dict[str, Any]:
    served = served_outputs(raw, heads)
    outputs = SplitOutputs(
        served.sentiment, served.rating, raw.sentence_aspects, review_aspects=raw.review_aspects,
        review_stars=served.stars,
    )
    return score_split(outputs, reviews, sentences, thresholds)


def evaluate_split(
    model: MultiTaskReviewModel,
    reviews: TaskRows,
    sentences: TaskRows,
    device: torch.device,
    thresholds: dict[str, float] | None,
    batch_size: int,
    review_store: ActivationStore | None = None,
    sentence_store: ActivationStore | None = None,
    prior: np.ndarray | None = None,
    calibrate: bool = True,
) -> tuple[dict[str, Any], dict[str, float], HeadConfig]:
    """Metrics on one split with the model's served outputs. With ``thresholds`` ``None`` (validation) the
    aspect thresholds and, when ``calibrate``, the calibrations are tuned here first; returns (metrics,
    thresholds, head config with the calibrations)."""
    raw = raw_outputs(model, reviews, sentences, device, batch_size, review_store, sentence_store)
    heads = model.heads
    record: dict[str, Any] = {}
    if thresholds is None:
        if calibrate and prior is not None:
            heads, record = tune_calibration(raw, reviews, heads, prior.astype(np.float32))
        thresholds = tune_split_thresholds(
            SplitOutputs(raw.sentiment, raw.rating, raw.sentence_aspects, review_aspects=raw.review_aspects),
            reviews,
            sentences,
        )
    metrics = score_outputs(raw, reviews, sentences, heads, thresholds)
    if record:
        metrics["calibration"] = record
    return metrics, thresholds, heads


# --- optimization ------------------------------------------------------------------------------------------


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


@dataclass
class Optimization:
    """The optimizer, its learning-rate schedule, the batches it steps over and the thread tuner."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    batches: Iterator[tuple[list[int], list[int]]]
    steps_per_epoch: int
    threads: ThreadTuner


def _linear_schedule(total_steps: int, warmup: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def _optimization(config: TrainConfig, model: MultiTaskReviewModel, data: Datasets) -> Optimization:
    steps_per_epoch = config.steps_per_epoch or math.ceil(
        len(data.train_reviews) / max(1, round(config.batch_size * (1 - config.aspect_share)))
    )
    total_steps = steps_per_epoch * config.max_epochs
    warmup = max(1, int(config.warmup_ratio * total_steps))
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(total_steps, warmup))
    batches = MixedBatches(
        data.train_reviews,
        data.train_aspects,
        config.batch_size,
        config.aspect_share,
        config.seed,
        human_share=config.human_share,
    ).indices()
    return Optimization(optimizer, scheduler, batches, steps_per_epoch, ThreadTuner(fixed=config.threads))


def _over_budget(config: TrainConfig, started: float) -> bool:
    return bool(config.time_budget_s) and time.time() - started > config.time_budget_s


def _label_tensors(rows: TaskRows, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "sentiment": torch.from_numpy(rows.sentiment).to(device),
        "rating": torch.from_numpy(rows.rating).to(device),
        "aspects": torch.from_numpy(rows.aspects).to(device),
        "aspect_weight": torch.from_numpy(rows.aspect_weight).to(device),
    }


def _soft_targets(rows: TaskRows, device: torch.device) -> SoftTargets | None:
    if rows.soft is None:
        return None
    soft = rows.soft
    return SoftTargets(
        torch.from_numpy(soft.sentiment).to(device),
        torch.from_numpy(soft.rating).to(device),
        torch.from_numpy(soft.aspects).to(device),
        None if soft.stars is None else torch.from_numpy(soft.stars).to(device),
    )


def _stacked_hidden(
    parts: list[tuple[ActivationStore, list[int]]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached activations of several stores' rows in one padded batch."""
    tensors = [store.batch(idx, device) for store, idx in parts if len(idx)]
    width = max(h.shape[1] for h, _ in tensors)
    hidden = torch.cat([torch.nn.functional.pad(h, (0, 0, 0, width - h.shape[1])) for h, _ in tensors])
    mask = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for _, m in tensors])
    return hidden, mask


def forward_batch(
    model: MultiTaskReviewModel,
    data: Datasets,
    review_idx: list[int],
    aspect_idx: list[int],
    device: torch.device,
    features: Features | None,
    config: TrainConfig,
) -> tuple[MultiTaskOutput, int]:
    """One training batch's forward pass and loss (gold, plus the teacher's where rows carry soft labels);
    returns the output and the batch's padded token count."""
    rows = TaskRows.concat([data.train_reviews.subset(review_idx), data.train_aspects.subset(aspect_idx)])
    labels = _label_tensors(rows, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        if features is not None:
            hidden, mask = _stacked_hidden(
                [(features.of("train_reviews"), review_idx), (features.of("train_aspects"), aspect_idx)], device
            )
            out = model(None, mask, **labels, hidden_states=hidden, from_layer=features.layer)
        else:
            assert rows.ids is not None
            ids, mask_np = pad(rows.ids)
            mask = torch.from_numpy(mask_np).to(device)
            out = model(torch.from_numpy(ids).to(device), mask, **labels)
    soft = _soft_targets(rows, device)
    if soft is not None and out.loss is not None and config.distill_weight > 0:
        kd = distillation_losses(out, soft, config.distill_temperature)
        w = model.heads.loss_weights
        kd_loss = w.sentiment * kd["sentiment"] + w.rating * kd["rating"] + w.aspects * kd["aspects"]
        out.loss = (1 - config.distill_weight) * out.loss + config.distill_weight * kd_loss
        out.losses = {**out.losses, **{f"distill_{k}": v for k, v in kd.items()}}
    return out, int(mask.numel())


def train_epoch(
    model: MultiTaskReviewModel,
    data: Datasets,
    opt: Optimization,
    config: TrainConfig,
    device: torch.device,
    epoch: int,
    started: float,
    features: Features | None = None,
) -> tuple[int, dict[str, float]]:
    """One epoch of optimizer steps (cut short by the time budget); returns (steps done, summed losses)."""
    model.train()
    sums: dict[str, float] = {"loss": 0.0, "sentiment": 0.0, "rating": 0.0, "aspects": 0.0}
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
        review_idx, aspect_idx = next(opt.batches)
        opt.threads.before_step()
        step_start = time.perf_counter()
        out, tokens = forward_batch(model, data, review_idx, aspect_idx, device, features, config)
        assert out.loss is not None
        opt.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.optimizer.step()
        opt.scheduler.step()
        opt.threads.after_step(time.perf_counter() - step_start, tokens)
        sums["loss"] += float(out.loss.detach())
        for k, v in out.losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        bar.set_postfix(loss=f"{sums['loss'] / (bar.n + 1):.3f}", refresh=False)
    return steps_done, sums


def linear_probe(
    model: MultiTaskReviewModel,
    data: Datasets,
    features: Features,
    config: TrainConfig,
    device: torch.device,
) -> dict[str, float]:
    """LP of LP-FT: the heads alone on the frozen model's pooled features (computed once), before fine-tuning."""
    started = time.time()
    pooled_reviews = pooled_features(model, features.of("train_reviews"), config.eval_batch_size, device)
    pooled_aspects = pooled_features(model, features.of("train_aspects"), config.eval_batch_size, device)
    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    optimizer = torch.optim.AdamW(head_params, lr=config.head_learning_rate, weight_decay=config.weight_decay)
    batches = MixedBatches(
        data.train_reviews, data.train_aspects, config.batch_size * 4, config.aspect_share, config.seed + 1,
        human_share=config.human_share,
    ).indices()
    model.train()
    total = 0.0
    for _ in range(config.linear_probe_steps):
        r, a = next(batches)
        rows = TaskRows.concat([data.train_reviews.subset(r), data.train_aspects.subset(a)])
        pooled = torch.cat([pooled_reviews[r], pooled_aspects[a]]).to(device)
        out = model.heads_forward(pooled)
        labels = _label_tensors(rows, device)
        model.add_losses(out, labels["sentiment"], labels["rating"], labels["aspects"], labels["aspect_weight"])
        assert out.loss is not None
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        total += float(out.loss.detach())
    return {"steps": config.linear_probe_steps, "mean_loss": total / max(1, config.linear_probe_steps),
            "seconds": round(time.time() - started, 1)}


@dataclass
class FitResult:
    """The best epoch (by validation score): its number, thresholds, calibrated heads and validation metrics."""

    best_epoch: int = 0
    thresholds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ASPECT_NAMES, 0.5))
    heads: HeadConfig | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    steps_per_epoch: int = 0
    steps: int = 0
    threads: list[dict[str, float]] = field(default_factory=list)
    linear_probe: dict[str, float] | None = None


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    balanced = metrics.get("star_balanced", metrics)
    return {
        "sentiment_macro_f1": metrics["sentiment"]["macro_f1"],
        "rating_mae": metrics["rating"]["mae"],
        "balanced_sentiment_macro_f1": balanced["sentiment"]["macro_f1"],
        "balanced_accuracy_5class": balanced["rating"]["accuracy_5class"],
        "balanced_rating_mae": balanced["rating"]["mae"],
        "aspect_macro_f1": metrics["aspects"]["macro_f1"],
        "aspect_macro_f1_target6": metrics["aspects_target"]["macro_f1"],
    }


def fit(
    model: MultiTaskReviewModel,
    data: Datasets,
    config: TrainConfig,
    device: torch.device,
    started: float,
    features: Features | None = None,
) -> FitResult:
    """Step 4: epochs until early stopping or the time budget; leaves the best epoch's weights in ``model``."""
    opt = _optimization(config, model, data)
    result = FitResult(steps_per_epoch=opt.steps_per_epoch)
    if config.linear_probe_steps > 0 and features is not None:
        result.linear_probe = linear_probe(model, data, features, config, device)
        logger.info("linear probe: %s", result.linear_probe)
    prior = star_prior(data.train_reviews)
    best_score, best_state, stale = -1.0, None, 0
    val_reviews = features.of("validation_reviews") if features else None
    val_sentences = features.of("validation_sentences") if features else None
    for epoch in range(1, config.max_epochs + 1):
        epoch_start = time.time()
        steps_done, sums = train_epoch(model, data, opt, config, device, epoch, started, features)
        result.steps += steps_done
        train_s = time.time() - epoch_start
        val, thresholds, heads = evaluate_split(
            model, data.validation_reviews, data.validation_sentences, device, None, config.eval_batch_size,
            val_reviews, val_sentences, prior=prior, calibrate=config.calibrate,
        )
        record = {
            "epoch": epoch,
            "train_seconds": round(train_s, 1),
            "eval_seconds": round(time.time() - epoch_start - train_s, 1),
            "steps": steps_done,
            "torch_threads": torch.get_num_threads(),
            "train_loss": {k: v / max(1, steps_done) for k, v in sums.items()},
            "validation_score": val["score"],
            "validation_sentiment_macro_f1": val["sentiment"]["macro_f1"],
            "validation_rating_mae": val["rating"]["mae"],
            "validation_aspect_macro_f1": val["aspects"]["macro_f1"],
            "validation": _headline(val),
        }
        result.history.append(record)
        logger.info("epoch %d: %s", epoch, json.dumps(record))
        if val["score"] > best_score:
            best_score, stale = val["score"], 0
            result.best_epoch, result.thresholds, result.validation, result.heads = epoch, thresholds, val, heads
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
    if result.heads is not None:
        model.heads = result.heads
    result.threads = opt.threads.choices
    model.eval()
    return result


# --- the artifact ------------------------------------------------------------------------------------------


def write_artifact(
    model: MultiTaskReviewModel, config: TrainConfig, data: Datasets, thresholds: dict[str, float], output_dir: Path
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Step 5: weights, ``config.json``, ONNX fp32, the int8 graph the export rule picks on validation, and
    parity with PyTorch; returns (version, parity, the export rule's record)."""
    save_weights(model, output_dir)
    version = f"{config.preset}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    artifact = ArtifactConfig(
        model_name=f"reviews-mtl-{config.preset}",
        model_version=version,
        preset=config.preset,
        encoder=config.encoder,
        encoder_config=encoder_config_dict(model),
        heads=model.heads.to_dict(),
        max_length=config.max_length,
        truncation=config.truncation,
        aspect_thresholds=thresholds,
        training={k: v for k, v in asdict(config).items() if k != "extra"},
        training_code_version=TRAINING_CODE_VERSION,
        data_source=data.data_source,
    )
    artifact.write(output_dir)
    export_onnx(model, output_dir)
    rule = Int8Rule(config.int8_max_sentiment_f1_drop, config.int8_max_mae_increase, config.int8_max_aspect_f1_drop)
    int8 = choose_int8(output_dir, data.validation_reviews, data.validation_sentences, thresholds, rule)
    replace(artifact, quantization={"chosen": int8["chosen"], **int8["chosen_variant"],
                                    "activation_scales": int8["activation_scales"]}).write(output_dir)
    # Validation rows first; runtime agreement needs no labels, so a small split (the project's own sample)
    # is topped up with training texts to keep the check meaningful.
    parity_texts = [*data.validation_reviews.texts, *data.train_reviews.texts][: config.parity_rows]
    parity = check_parity(output_dir, parity_texts, model=model)
    if not parity["onnx_fp32"]["allclose_atol_1e-4"]:  # CPU workers would serve other answers than torch
        logger.error("the ONNX fp32 graph differs from the trained model: %s", parity["onnx_fp32"])
    return version, parity, int8


def train(config: TrainConfig, data_dir: Path | None, output_dir: Path) -> dict[str, Any]:
    """Train one model and write the artifact into ``output_dir``; returns the metrics written."""
    from reviews_mtl.training.baseline import run_baseline
    from reviews_mtl.training.report import write_model_card

    started = time.time()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder_path = resolve_encoder(config.encoder)
    logger.info("training preset %s on %s, encoder %s", config.preset, device, encoder_path)
    data = prepare_data(config, data_dir, output_dir, encoder_path)
    model = build_model(config, data, encoder_path, device)
    features = cache_features(model, data, config, device)
    fitted = fit(model, data, config, device, started, features)
    train_seconds = time.time() - started
    test, _, _ = evaluate_split(
        model, data.test_reviews, data.test_sentences, device, fitted.thresholds, config.eval_batch_size,
        features.of("test_reviews") if features else None, features.of("test_sentences") if features else None,
    )
    version, parity, int8 = write_artifact(model.cpu(), config, data, fitted.thresholds, output_dir)
    metrics = {
        "preset": config.preset,
        "model_version": version,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "thread_choices": fitted.threads,
        "cpu_count": os.cpu_count(),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - started, 1),
        "activation_cache": None if features is None else features.summary(),
        "linear_probe": fitted.linear_probe,
        "best_epoch": fitted.best_epoch,
        "epochs_run": len(fitted.history),
        "steps_per_epoch": fitted.steps_per_epoch,
        "steps": fitted.steps,
        "history": fitted.history,
        "counts": data.counts,
        "validation": fitted.validation,
        "test": test,
        "baseline": run_baseline(data),
        "int8": int8,
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
