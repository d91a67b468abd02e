"""Training presets: ``demo`` (minutes on 2 CPU cores) and ``full`` (all of ../shared/data, < 2 h)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from reviews_mtl.training.encoders import DEFAULT_ENCODER_NAME, default_encoder, resolve_encoder

__all__ = ["DEFAULT_ENCODER_NAME", "PRESETS", "TrainConfig", "default_encoder", "get_preset", "resolve_encoder"]

# Bump when training code or a preset changes what a cached demo model would be (beyond the files
# that reviews_mtl.training.demo_cache hashes); recorded in each trained artifact's config.json.
TRAINING_CODE_VERSION = "3"


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; presets are instances of it."""

    preset: str = "custom"
    encoder: str = DEFAULT_ENCODER_NAME
    max_length: int = 128
    batch_size: int = 16
    # Each batch: this share of aspect-labelled rows (human sentences + weakly labelled reviews),
    # the rest star-rated reviews.
    aspect_share: float = 0.375
    # Of the aspect rows, this share is drawn from human-labelled sentences (the rest: weakly labelled ones).
    human_share: float = 0.7
    learning_rate: float = 2e-5
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    max_epochs: int = 10
    # An "epoch" is this many optimizer steps (0 = one pass over the reviews), so that presets bound time.
    steps_per_epoch: int = 0
    patience: int = 3
    loss_sentiment: float = 1.0
    loss_rating: float = 0.5
    loss_aspects: float = 0.5
    weak_labels: bool = True
    weak_weight: float = 0.3
    class_weights: bool = True
    max_train_reviews: int = 0  # 0 = all
    max_val_reviews: int = 0  # caps validation and test reviews; 0 = all
    max_eval_sentences: int = 0  # caps validation and test aspect sentences; 0 = all
    freeze_layers: int = 0  # freeze embeddings + this many lowest encoder layers
    parity_rows: int = 2000
    val_fraction: float = 0.15
    seed: int = 13
    threads: int = 0  # 0 = measured on real steps (training/threads.py); N pins it
    eval_batch_size: int = 64
    dropout: float = 0.3
    time_budget_s: float = 0.0  # stop after the epoch that crosses this (0 = none)
    # Rating head: regression (1 + 4·sigmoid), stars (5-way softmax) or ordinal (4 cumulative logits).
    rating_head: str = "stars"
    expectation_mse: float = 0.5  # stars/ordinal: weight of the expected star's MSE beside the head's own loss
    # Positive aspect cells weigh (negatives / positives) ** this (0 = off; 0.5 = square root), at most 10.
    aspect_pos_weight: float = 0.5
    truncation: str = "head"  # head or head_tail (first and last tokens of a long review)
    # Compute the frozen layers once and train only the upper ones from those activations (fp16).
    cache_activations: bool = True
    cache_dir: str = ""  # keep the activations here (memory-mapped) and reuse them; "" = in memory
    linear_probe_steps: int = 0  # LP-FT: head-only steps on frozen pooled features before fine-tuning
    calibrate: bool = True  # tune the sentiment source/band and the star bias on validation
    soft_labels: str = ""  # a teacher's soft labels (reviews-mtl distill); "" = gold labels only
    distill_weight: float = 0.5  # loss = (1 - w) · gold + w · teacher, on rows the teacher labelled
    distill_temperature: float = 2.0
    # int8 export rule: the most quantized graph whose validation metrics lose at most this much vs fp32.
    int8_max_sentiment_f1_drop: float = 0.005
    int8_max_mae_increase: float = 0.01
    int8_max_aspect_f1_drop: float = 0.01
    extra: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


PRESETS: dict[str, TrainConfig] = {
    "demo": TrainConfig(
        preset="demo",
        max_length=64,
        batch_size=16,
        max_epochs=2,
        steps_per_epoch=100,
        aspect_share=0.5,
        patience=2,
        max_train_reviews=4000,
        max_val_reviews=400,
        max_eval_sentences=400,
        freeze_layers=3,
        parity_rows=400,
        learning_rate=1e-4,
        # 200 steps see 3,200 rows: caching the frozen layers of every row (13,000 aspect rows) would cost more
        # than it saves.
        cache_activations=False,
        # No wall-clock budget: a fixed 200 steps keeps the demo model the same on a loaded machine (a 150 s
        # budget cut one CI-style run to 77 steps under load). About 2-3 min of training on 2 idle cores.
        time_budget_s=0.0,
    ),
    "full": TrainConfig(
        preset="full",
        max_length=128,
        batch_size=16,
        max_epochs=10,
        steps_per_epoch=500,  # evaluate (and maybe stop early) every 500 steps
        human_share=0.8,
        patience=3,
        learning_rate=5e-5,
        loss_aspects=1.0,
        # The lowest 4 of MiniLM's 6 layers frozen and computed once (activation cache): each step runs 2 layers
        # and the heads, so the budget buys several passes over the pool instead of about one.
        freeze_layers=4,
        max_val_reviews=3000,
        max_eval_sentences=0,
        parity_rows=1000,
        time_budget_s=6300.0,
    ),
}


def get_preset(name: str) -> TrainConfig:
    try:
        return PRESETS[name]
    except KeyError as exc:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from exc
