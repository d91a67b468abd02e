"""The multi-task review model, whole, in one file.

Start here: :class:`MultiTaskReviewModel` = a pretrained encoder (any Hugging Face ``AutoModel``) →
mean pooling over real tokens → three heads (sentiment, rating, aspects). ``forward`` returns a
:class:`MultiTaskOutput`; it computes the loss only when labels are given, and each head's loss counts
only the rows (for aspects: the cells) that carry its label. :class:`ExportWrapper` is what goes to
ONNX: probabilities out, so the runtime does no math. Its ONNX input and output names belong to the artifact
format (:mod:`reviews_mtl.model.artifact`). With :mod:`reviews_mtl.model.runtime_torch` the only torch module
of the serving package: the GPU runtime and the trainer both build the network from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS

IGNORE_INDEX = -100


@dataclass(frozen=True)
class LossWeights:
    """α, β, γ of ``loss = α·CE(sentiment) + β·MSE(rating) + γ·BCE(aspects)``."""

    sentiment: float = 1.0
    rating: float = 0.5
    aspects: float = 0.5


@dataclass(frozen=True)
class HeadConfig:
    """The shape of the three heads (the issue's spec) and the label spaces."""

    sentiment_hidden: int = 256
    rating_hidden: int = 128
    aspect_hidden: int = 256
    dropout: float = 0.3
    sentiment_labels: tuple[str, ...] = SENTIMENT_LABELS
    aspect_names: tuple[str, ...] = ASPECT_NAMES
    sentiment_class_weights: tuple[float, ...] | None = None
    loss_weights: LossWeights = field(default_factory=LossWeights)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        values = dict(data)
        values["sentiment_labels"] = tuple(values.get("sentiment_labels", SENTIMENT_LABELS))
        values["aspect_names"] = tuple(values.get("aspect_names", ASPECT_NAMES))
        weights = values.get("sentiment_class_weights")
        values["sentiment_class_weights"] = tuple(weights) if weights is not None else None
        values["loss_weights"] = LossWeights(**values.get("loss_weights", {}))
        return cls(**values)


@dataclass
class MultiTaskOutput:
    """What :meth:`MultiTaskReviewModel.forward` returns; the losses only when labels were given."""

    sentiment_logits: torch.Tensor  # (batch, 3)
    rating: torch.Tensor  # (batch,) in stars, 1..5
    aspect_logits: torch.Tensor  # (batch, 10)
    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the hidden states of the real (unpadded) tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    summed = (hidden * mask).sum(dim=1)  # (batch, hidden)
    counts = mask.sum(dim=1).clamp(min=1.0)  # (batch, 1)
    return summed / counts


def _head(hidden: int, inner: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, inner), nn.ReLU(), nn.Dropout(dropout), nn.Linear(inner, out))


class MultiTaskReviewModel(nn.Module):
    """Shared encoder → mean pooling → sentiment (3), rating (1 + 4·sigmoid) and aspects (10 sigmoids)."""

    def __init__(self, encoder: nn.Module, hidden_size: int, heads: HeadConfig | None = None) -> None:
        super().__init__()
        self.heads = heads or HeadConfig()
        self.encoder = encoder
        h = self.heads
        self.sentiment_head = _head(hidden_size, h.sentiment_hidden, len(h.sentiment_labels), h.dropout)
        self.rating_head = _head(hidden_size, h.rating_hidden, 1, h.dropout)
        self.aspect_head = _head(hidden_size, h.aspect_hidden, len(h.aspect_names), h.dropout)
        weights = h.sentiment_class_weights
        self.register_buffer(
            "sentiment_class_weights",
            torch.tensor(weights if weights is not None else [1.0] * len(h.sentiment_labels)),
            persistent=False,
        )

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)  # (batch, hidden)

    def forward(
        self,
        input_ids: torch.Tensor,  # (batch, seq)
        attention_mask: torch.Tensor,  # (batch, seq)
        sentiment: torch.Tensor | None = None,  # (batch,) class index or IGNORE_INDEX
        rating: torch.Tensor | None = None,  # (batch,) stars, NaN where unknown
        aspects: torch.Tensor | None = None,  # (batch, 10) 0/1 targets
        aspect_weight: torch.Tensor | None = None,  # (batch, 10) 0 = no label, 1 = human, <1 = weak
    ) -> MultiTaskOutput:
        pooled = self.pooled(input_ids, attention_mask)  # (batch, hidden)
        sentiment_logits = self.sentiment_head(pooled)  # (batch, 3)
        rating_pred = 1.0 + 4.0 * torch.sigmoid(self.rating_head(pooled).squeeze(-1))  # (batch,)
        aspect_logits = self.aspect_head(pooled)  # (batch, 10)
        out = MultiTaskOutput(sentiment_logits, rating_pred, aspect_logits)
        if sentiment is None and rating is None and aspects is None:
            return out
        class_weights: torch.Tensor = self.sentiment_class_weights  # type: ignore[assignment]
        losses = masked_losses(out, sentiment, rating, aspects, aspect_weight, class_weights)
        w = self.heads.loss_weights
        out.losses = losses
        out.loss = w.sentiment * losses["sentiment"] + w.rating * losses["rating"] + w.aspects * losses["aspects"]
        return out


def masked_losses(
    out: MultiTaskOutput,
    sentiment: torch.Tensor | None,
    rating: torch.Tensor | None,
    aspects: torch.Tensor | None,
    aspect_weight: torch.Tensor | None,
    class_weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-head losses over the rows that carry each label; a head with no labelled row gives 0.

    The rating loss is the MSE on the 0..1 scale ((stars - 1) / 4), so that β weighs a loss of the
    same order as the other two.
    """
    zero = out.sentiment_logits.sum() * 0.0  # keeps the graph and the device
    losses = {"sentiment": zero, "rating": zero, "aspects": zero}
    if sentiment is not None and bool((sentiment != IGNORE_INDEX).any()):
        losses["sentiment"] = F.cross_entropy(
            out.sentiment_logits.float(), sentiment, weight=class_weights, ignore_index=IGNORE_INDEX
        )
    if rating is not None:
        known = ~torch.isnan(rating)
        if bool(known.any()):
            pred = (out.rating.float()[known] - 1.0) / 4.0
            losses["rating"] = F.mse_loss(pred, (rating[known] - 1.0) / 4.0)
    if aspects is not None:
        weight = aspect_weight if aspect_weight is not None else torch.ones_like(aspects)
        labelled = weight > 0
        if bool(labelled.any()):
            cell = F.binary_cross_entropy_with_logits(out.aspect_logits.float(), aspects, reduction="none")
            losses["aspects"] = (cell * weight).sum() / labelled.sum()
    return losses


class ExportWrapper(nn.Module):
    """The inference graph for ONNX: token ids in, probabilities and stars out."""

    def __init__(self, model: MultiTaskReviewModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return (
            torch.softmax(out.sentiment_logits, dim=-1),  # (batch, 3)
            out.rating,  # (batch,)
            torch.sigmoid(out.aspect_logits),  # (batch, 10)
        )


def build_encoder(name_or_path: str) -> tuple[nn.Module, int]:
    """A pretrained Hugging Face encoder (offline when ``HF_HUB_OFFLINE=1``) and its hidden size."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(name_or_path)
    return encoder, int(encoder.config.hidden_size)


def encoder_from_config(config: dict[str, Any]) -> tuple[nn.Module, int]:
    """An encoder with random weights from a saved ``config.json`` dict (artifact loading, tiny tests)."""
    from transformers import AutoConfig, AutoModel

    model_type = config["model_type"]
    values = {k: v for k, v in config.items() if k != "model_type"}
    hf_config = AutoConfig.for_model(model_type, **values)
    encoder = AutoModel.from_config(hf_config)  # type: ignore[no-untyped-call]
    return encoder, int(hf_config.hidden_size)
