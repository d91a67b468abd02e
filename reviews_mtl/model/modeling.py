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

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS

IGNORE_INDEX = -100
N_STARS = 5
RATING_HEADS: tuple[str, ...] = ("regression", "stars", "ordinal")
SENTIMENT_SOURCES: tuple[str, ...] = ("head", "stars")
# The star each sentiment label groups (labels are derived from stars the same way in training).
STAR_TO_SENTIMENT: tuple[int, ...] = (0, 0, 1, 2, 2)


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
    rating_head: str = "regression"  # one of RATING_HEADS
    expectation_mse: float = 0.5  # stars head: weight of the expected star's MSE beside the cross-entropy
    aspect_pos_weight: tuple[float, ...] | None = None  # per aspect, weight of a positive cell (rare aspects)
    # Calibrations, tuned on validation after training and applied to what is served (ONNX graph included).
    sentiment_source: str = "head"  # one of SENTIMENT_SOURCES
    sentiment_bias: tuple[float, ...] | None = None  # added to the served sentiment's log-probabilities
    star_bias: tuple[float, ...] | None = None  # added to the star distribution's log-probabilities

    def __post_init__(self) -> None:
        if self.rating_head not in RATING_HEADS:
            raise ValueError(f"rating_head {self.rating_head!r}: choose one of {', '.join(RATING_HEADS)}")
        if self.sentiment_source not in SENTIMENT_SOURCES:
            raise ValueError(f"sentiment_source {self.sentiment_source!r}: one of {', '.join(SENTIMENT_SOURCES)}")
        if self.sentiment_source == "stars" and self.rating_head == "regression":
            raise ValueError("sentiment_source 'stars' needs a star distribution (rating_head stars or ordinal)")

    @property
    def has_star_distribution(self) -> bool:
        return self.rating_head != "regression"

    @property
    def rating_outputs(self) -> int:
        return {"regression": 1, "stars": N_STARS, "ordinal": N_STARS - 1}[self.rating_head]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        """Read a saved head config; keys an older artifact lacks take their defaults (the seed's heads)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["sentiment_labels"] = tuple(values.get("sentiment_labels", SENTIMENT_LABELS))
        values["aspect_names"] = tuple(values.get("aspect_names", ASPECT_NAMES))
        for key in ("sentiment_class_weights", "aspect_pos_weight", "sentiment_bias", "star_bias"):
            value = values.get(key)
            values[key] = tuple(float(v) for v in value) if value is not None else None
        values["loss_weights"] = LossWeights(**values.get("loss_weights", {}))
        return cls(**values)


@dataclass
class MultiTaskOutput:
    """What :meth:`MultiTaskReviewModel.forward` returns; the losses only when labels were given."""

    sentiment_logits: torch.Tensor  # (batch, 3)
    rating: torch.Tensor  # (batch,) in stars, 1..5 (the expectation where the head gives a distribution)
    aspect_logits: torch.Tensor  # (batch, 10)
    star_logits: torch.Tensor | None = None  # (batch, 5) stars head; (batch, 4) ordinal cumulative logits
    star_probs: torch.Tensor | None = None  # (batch, 5) the star distribution, uncalibrated
    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class SoftTargets:
    """A teacher's outputs for distillation (:func:`distillation_losses`); rows without them are NaN."""

    sentiment: torch.Tensor  # (batch, 3) probabilities
    rating: torch.Tensor  # (batch,) stars
    aspects: torch.Tensor  # (batch, 10) probabilities
    stars: torch.Tensor | None = None  # (batch, 5) probabilities, when the teacher has a star distribution


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the hidden states of the real (unpadded) tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    summed = (hidden * mask).sum(dim=1)  # (batch, hidden)
    counts = mask.sum(dim=1).clamp(min=1.0)  # (batch, 1)
    return summed / counts


def _head(hidden: int, inner: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, inner), nn.ReLU(), nn.Dropout(dropout), nn.Linear(inner, out))


class MultiTaskReviewModel(nn.Module):
    """Shared encoder → mean pooling → sentiment (3), rating (regression, stars or ordinal) and aspects (10)."""

    def __init__(self, encoder: nn.Module, hidden_size: int, heads: HeadConfig | None = None) -> None:
        super().__init__()
        self.heads = heads or HeadConfig()
        self.encoder = encoder
        h = self.heads
        self.sentiment_head = _head(hidden_size, h.sentiment_hidden, len(h.sentiment_labels), h.dropout)
        self.rating_head = _head(hidden_size, h.rating_hidden, h.rating_outputs, h.dropout)
        self.aspect_head = _head(hidden_size, h.aspect_hidden, len(h.aspect_names), h.dropout)
        weights = h.sentiment_class_weights
        self.register_buffer(
            "sentiment_class_weights",
            torch.tensor(weights if weights is not None else [1.0] * len(h.sentiment_labels)),
            persistent=False,
        )
        pos_weight = h.aspect_pos_weight
        self.register_buffer(
            "aspect_pos_weight",
            torch.tensor(pos_weight if pos_weight is not None else [1.0] * len(h.aspect_names)),
            persistent=False,
        )

    # --- the encoder, whole or in two parts (a trainer caches the frozen lower part's activations) ---------

    def _bert_parts(self) -> tuple[nn.Module, nn.ModuleList]:
        embeddings = getattr(self.encoder, "embeddings", None)
        layers = getattr(getattr(self.encoder, "encoder", None), "layer", None)
        if embeddings is None or not isinstance(layers, nn.ModuleList):
            raise ValueError(f"{type(self.encoder).__name__}: running the encoder in parts needs a BERT-style encoder")
        return embeddings, layers

    def _layer_mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor | None:
        from transformers.masking_utils import create_bidirectional_mask

        config = self.encoder.config  # type: ignore[union-attr]
        mask: torch.Tensor | None = create_bidirectional_mask(
            config=config, inputs_embeds=hidden, attention_mask=attention_mask
        )
        return mask

    def lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_layers: int) -> torch.Tensor:
        """The hidden states after the embeddings and the lowest ``n_layers`` layers: (batch, seq, hidden)."""
        embeddings, layers = self._bert_parts()
        hidden: torch.Tensor = embeddings(input_ids=input_ids)
        mask = self._layer_mask(hidden, attention_mask)
        for layer in layers[:n_layers]:
            hidden = layer(hidden, mask)
        return hidden

    def upper(self, hidden: torch.Tensor, attention_mask: torch.Tensor, from_layer: int) -> torch.Tensor:
        """The last hidden state from the hidden states after layer ``from_layer`` (see :meth:`lower`)."""
        _, layers = self._bert_parts()
        mask = self._layer_mask(hidden, attention_mask)
        for layer in layers[from_layer:]:
            hidden = layer(hidden, mask)
        return hidden

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)  # (batch, hidden)

    # --- heads --------------------------------------------------------------------------------------------

    def heads_forward(self, pooled: torch.Tensor) -> MultiTaskOutput:
        """The three heads on pooled representations (batch, hidden)."""
        sentiment_logits = self.sentiment_head(pooled)  # (batch, 3)
        rating_out = self.rating_head(pooled)  # (batch, 1 | 5 | 4)
        aspect_logits = self.aspect_head(pooled)  # (batch, 10)
        if self.heads.rating_head == "regression":
            rating_pred = 1.0 + 4.0 * torch.sigmoid(rating_out.squeeze(-1))  # (batch,)
            return MultiTaskOutput(sentiment_logits, rating_pred, aspect_logits)
        probs = star_distribution(rating_out, self.heads.rating_head)  # (batch, 5)
        return MultiTaskOutput(sentiment_logits, expected_stars(probs), aspect_logits, rating_out, probs)

    def forward(
        self,
        input_ids: torch.Tensor | None,  # (batch, seq); None when hidden_states are given
        attention_mask: torch.Tensor,  # (batch, seq)
        sentiment: torch.Tensor | None = None,  # (batch,) class index or IGNORE_INDEX
        rating: torch.Tensor | None = None,  # (batch,) stars, NaN where unknown
        aspects: torch.Tensor | None = None,  # (batch, 10) 0/1 targets
        aspect_weight: torch.Tensor | None = None,  # (batch, 10) 0 = no label, 1 = human, <1 = weak
        hidden_states: torch.Tensor | None = None,  # (batch, seq, hidden) after layer ``from_layer``
        from_layer: int = 0,
    ) -> MultiTaskOutput:
        if hidden_states is not None:
            pooled = mean_pool(self.upper(hidden_states, attention_mask, from_layer), attention_mask)
        else:
            if input_ids is None:
                raise ValueError("forward needs input_ids or hidden_states")
            pooled = self.pooled(input_ids, attention_mask)  # (batch, hidden)
        out = self.heads_forward(pooled)
        if sentiment is None and rating is None and aspects is None:
            return out
        self.add_losses(out, sentiment, rating, aspects, aspect_weight)
        return out

    def add_losses(
        self,
        out: MultiTaskOutput,
        sentiment: torch.Tensor | None,
        rating: torch.Tensor | None,
        aspects: torch.Tensor | None,
        aspect_weight: torch.Tensor | None,
    ) -> None:
        class_weights: torch.Tensor = self.sentiment_class_weights  # type: ignore[assignment]
        pos_weight: torch.Tensor = self.aspect_pos_weight  # type: ignore[assignment]
        losses = masked_losses(
            out, sentiment, rating, aspects, aspect_weight, class_weights,
            rating_head=self.heads.rating_head, expectation_mse=self.heads.expectation_mse,
            aspect_pos_weight=pos_weight if self.heads.aspect_pos_weight is not None else None,
        )
        w = self.heads.loss_weights
        out.losses = losses
        out.loss = w.sentiment * losses["sentiment"] + w.rating * losses["rating"] + w.aspects * losses["aspects"]

    def served(self, out: MultiTaskOutput) -> ServedOutput:
        """What users see: probabilities with the head config's calibrations applied."""
        return serve(out.sentiment_logits, out.rating, out.aspect_logits, out.star_probs, self.heads)


@dataclass
class ServedOutput:
    sentiment_probs: torch.Tensor  # (batch, 3)
    rating: torch.Tensor  # (batch,) stars, float
    aspect_probs: torch.Tensor  # (batch, 10)
    star_probs: torch.Tensor | None  # (batch, 5), where the head gives a star distribution


def star_distribution(logits: torch.Tensor, rating_head: str) -> torch.Tensor:
    """(batch, 5) probabilities from the stars head's logits or the ordinal head's cumulative logits."""
    if rating_head == "stars":
        return torch.softmax(logits.float(), dim=-1)
    above = torch.sigmoid(logits.float())  # (batch, 4): P(stars > k), k = 1..4
    ones = torch.ones_like(above[:, :1])
    zeros = torch.zeros_like(above[:, :1])
    cumulative = torch.cat([ones, above, zeros], dim=-1)  # (batch, 6): P(stars > k), k = 0..5
    probs = (cumulative[:, :-1] - cumulative[:, 1:]).clamp(min=1e-6)  # (batch, 5), >= 0 even if not monotone
    return probs / probs.sum(dim=-1, keepdim=True)


def expected_stars(probs: torch.Tensor) -> torch.Tensor:
    stars = torch.arange(1, probs.shape[-1] + 1, dtype=probs.dtype, device=probs.device)
    return (probs * stars).sum(dim=-1)  # (batch,)


def group_stars(star_probs: torch.Tensor) -> torch.Tensor:
    """(batch, 5) star probabilities → (batch, 3) negative / neutral / positive.

    A product with a 0/1 matrix, not ``index_add``: the ONNX exporter turns ``index_add`` into a scatter that keeps
    one of the stars sharing a class instead of summing them (negative = P(2★), positive = P(5★) on CPU workers)."""
    groups = torch.zeros(len(STAR_TO_SENTIMENT), 3, dtype=star_probs.dtype, device=star_probs.device)
    groups[torch.arange(len(STAR_TO_SENTIMENT)), torch.tensor(STAR_TO_SENTIMENT)] = 1.0
    return star_probs @ groups


def _shift(probs: torch.Tensor, bias: tuple[float, ...] | None) -> torch.Tensor:
    if bias is None:
        return probs
    shift = torch.tensor(bias, dtype=probs.dtype, device=probs.device)
    return torch.softmax(torch.log(probs.clamp(min=1e-12)) + shift, dim=-1)


def serve(
    sentiment_logits: torch.Tensor,
    rating: torch.Tensor,
    aspect_logits: torch.Tensor,
    star_probs: torch.Tensor | None,
    heads: HeadConfig,
) -> ServedOutput:
    """Apply the calibrations: star bias (then the rating is the calibrated expectation), the sentiment source
    and its bias. The trainer calls this on raw outputs when it tunes them; the ONNX graph holds the same ops."""
    aspect_probs = torch.sigmoid(aspect_logits.float())
    stars = None
    if star_probs is not None:
        stars = _shift(star_probs.float(), heads.star_bias)
        rating = expected_stars(stars)
    if heads.sentiment_source == "stars" and stars is not None:
        sentiment = group_stars(stars)
    else:
        sentiment = torch.softmax(sentiment_logits.float(), dim=-1)
    return ServedOutput(_shift(sentiment, heads.sentiment_bias), rating.float(), aspect_probs, stars)


def masked_losses(
    out: MultiTaskOutput,
    sentiment: torch.Tensor | None,
    rating: torch.Tensor | None,
    aspects: torch.Tensor | None,
    aspect_weight: torch.Tensor | None,
    class_weights: torch.Tensor | None = None,
    rating_head: str = "regression",
    expectation_mse: float = 0.0,
    aspect_pos_weight: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-head losses over the rows that carry each label; a head with no labelled row gives 0.

    The rating loss of the regression head is the MSE on the 0..1 scale ((stars - 1) / 4), so that β weighs
    a loss of the same order as the other two; the stars head adds ``expectation_mse`` × that MSE (of the
    expected star) to its cross-entropy; the ordinal head averages four binary cross-entropies.
    ``aspect_pos_weight`` (10,) weighs positive aspect cells (rare aspects up).
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
            losses["rating"] = _rating_loss(out, rating, known, rating_head, expectation_mse)
    if aspects is not None:
        weight = aspect_weight if aspect_weight is not None else torch.ones_like(aspects)
        labelled = weight > 0
        if bool(labelled.any()):
            cell = F.binary_cross_entropy_with_logits(
                out.aspect_logits.float(), aspects, reduction="none", pos_weight=aspect_pos_weight
            )
            losses["aspects"] = (cell * weight).sum() / labelled.sum()
    return losses


def _rating_loss(
    out: MultiTaskOutput, rating: torch.Tensor, known: torch.Tensor, rating_head: str, expectation_mse: float
) -> torch.Tensor:
    target01 = (rating[known] - 1.0) / 4.0
    mse = F.mse_loss((out.rating.float()[known] - 1.0) / 4.0, target01)
    if rating_head == "regression":
        return mse
    if out.star_logits is None:
        raise ValueError(f"rating_head {rating_head!r} needs star logits")
    star_index = (rating[known].round().long() - 1).clamp(0, N_STARS - 1)  # (known,)
    logits = out.star_logits.float()[known]
    if rating_head == "stars":
        loss = F.cross_entropy(logits, star_index)
    else:  # ordinal: P(stars > k) for k = 1..4
        thresholds = torch.arange(1, N_STARS, device=logits.device)  # (4,)
        above = (star_index.unsqueeze(-1) + 1 > thresholds).float()  # (known, 4)
        loss = F.binary_cross_entropy_with_logits(logits, above)
    return loss + expectation_mse * mse


def distillation_losses(out: MultiTaskOutput, soft: SoftTargets, temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """Losses against a teacher's outputs, over the rows that carry them (NaN rows skipped).

    Sentiment: KL(teacher ‖ student) at ``temperature``; rating: KL over the star distribution when both
    have one, else MSE of the expected star (0..1 scale); aspects: BCE against the teacher's probabilities.
    """
    zero = out.sentiment_logits.sum() * 0.0
    losses = {"sentiment": zero, "rating": zero, "aspects": zero}
    t = temperature
    rows = ~torch.isnan(soft.sentiment).any(dim=-1)
    if bool(rows.any()):
        log_student = F.log_softmax(out.sentiment_logits.float()[rows] / t, dim=-1)
        losses["sentiment"] = F.kl_div(log_student, soft.sentiment[rows].float(), reduction="batchmean") * t * t
    if soft.stars is not None and out.star_probs is not None:
        rows = ~torch.isnan(soft.stars).any(dim=-1)
        if bool(rows.any()):
            log_student = torch.log(out.star_probs[rows].clamp(min=1e-8))
            losses["rating"] = F.kl_div(log_student, soft.stars[rows].float(), reduction="batchmean")
    else:
        rows = ~torch.isnan(soft.rating)
        if bool(rows.any()):
            losses["rating"] = F.mse_loss((out.rating.float()[rows] - 1) / 4, (soft.rating[rows].float() - 1) / 4)
    rows = ~torch.isnan(soft.aspects).any(dim=-1)
    if bool(rows.any()):
        losses["aspects"] = F.binary_cross_entropy_with_logits(out.aspect_logits.float()[rows], soft.aspects[rows])
    return losses


class ExportWrapper(nn.Module):
    """The inference graph for ONNX: token ids in, served probabilities and stars out (the star distribution
    as a fourth output where the rating head gives one)."""

    def __init__(self, model: MultiTaskReviewModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        served = self.model.served(self.model(input_ids=input_ids, attention_mask=attention_mask))
        outputs = (served.sentiment_probs, served.rating, served.aspect_probs)  # (batch, 3), (batch,), (batch, 10)
        return outputs if served.star_probs is None else (*outputs, served.star_probs)  # (batch, 5)


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
