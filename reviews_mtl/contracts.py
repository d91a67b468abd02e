"""Wire contracts: the input review (or its retraction), the enriched record and the dead letter.

Every record on a topic carries ``schema_version``. Decoding never raises past the caller:
:func:`decode_review` returns a :class:`Review`, a :class:`Retraction` or a :class:`DecodeFailure` that
names the reason, so a poison message is a value that the worker routes to the dead-letter topic.

Edits, deletes and re-sends (one ``review_id`` per product, :func:`supersedes` is the one ordering rule):
a review whose ``review_id`` was counted before for its product *replaces* that review's contribution to every
aggregate when it is newer (a higher ``version``; without versions on both sides, a later ``timestamp``); a
:class:`Retraction` (``{"op": "delete", ...}``) removes it; anything else is a re-send: counted in a metric,
neither counted again nor dead-lettered.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

# Bytes of UTF-8 text, not characters: the limit protects the broker (default message.max.bytes is 1 MB)
# and the tokenizer, which truncates at 128 tokens anyway.
MAX_TEXT_BYTES = 32_000
MAX_TITLE_BYTES = 1_000
MAX_ID_CHARS = 256

SENTIMENT_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
ASPECT_NAMES: tuple[str, ...] = (
    "quality",
    "price",
    "shipping",
    "packaging",
    "durability",
    "appearance",
    "functionality",
    "ease_of_use",
    "customer_service",
    "value_for_money",
)

SentimentLabel = Literal["negative", "neutral", "positive"]

# Control characters other than tab, newline and carriage return carry no meaning in a review and confuse
# tokenizers and terminals: they are removed from text and title. A text made only of them is empty.
_CONTROL_CHARS = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])


_CONTROL_CHARS_FOUND = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def strip_control_characters(value: str) -> str:
    # Looking first is a fast scan; most texts have none, and translating is a slow per-character mapping.
    return value.translate(_CONTROL_CHARS) if _CONTROL_CHARS_FOUND.search(value) else value


# A predicted rating as published and counted: four decimals are far below what a star means, and Redis keeps the
# same number in each review's stored contribution, so an edit takes back exactly what was added.
RATING_DECIMALS = 4


def published_rating(rating: float) -> float:
    return round(rating, RATING_DECIMALS)


def model_input(title: str | None, text: str) -> str:
    """The one rule for the text the model reads, in training and in serving: ``"title. text"``, or the text alone."""
    return f"{title}. {text}" if title else text


class DecodeReason(str, Enum):
    """Why a message could not become a :class:`Review`; the value travels in the DLQ header."""

    EMPTY_VALUE = "empty_value"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_REVIEW_ID = "missing_review_id"
    MISSING_PRODUCT_ID = "missing_product_id"
    MISSING_TEXT = "missing_text"
    EMPTY_REVIEW_ID = "empty_review_id"
    EMPTY_PRODUCT_ID = "empty_product_id"
    EMPTY_TEXT = "empty_text"
    WRONG_TYPE = "wrong_type"
    TEXT_TOO_LONG = "text_too_long"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    INVALID_FIELD = "invalid_field"
    # No longer given: a repeated review_id is an edit or a re-send (see the module docstring). Kept so that dead
    # letters written by older workers still read.
    DUPLICATE_REVIEW_ID = "duplicate_review_id"
    # The worker itself failed on this message (the model's tokenizer, the record builder): a bug to fix, then
    # re-drive; never a crash that would take every replica down in turn.
    INTERNAL_ERROR = "internal_error"


class Review(BaseModel):
    """One input review (topic ``reviews``, key = ``product_id``)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    schema_version: int = SCHEMA_VERSION
    review_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    product_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    text: str = Field(min_length=1)
    title: str | None = None
    # Ground truth when known; carried through for evaluation, never used for prediction.
    rating: int | None = Field(default=None, ge=1, le=5)
    category: str | None = None
    # Event time as epoch seconds; end-to-end latency is measured from it.
    timestamp: float | None = None
    verified: bool | None = None
    user_id: str | None = None
    # Edits of one review carry increasing versions: the highest one counted is the one the aggregates hold.
    version: int | None = Field(default=None, ge=0)

    @field_validator("text", "title", mode="before")
    @classmethod
    def _no_control_characters(cls, value: object) -> object:
        return strip_control_characters(value) if isinstance(value, str) else value

    @field_validator("text")
    @classmethod
    def _text_within_limit(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank")
        if len(value.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
            raise ValueError(f"text longer than {MAX_TEXT_BYTES} bytes")
        return value

    @field_validator("review_id", "product_id")
    @classmethod
    def _id_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("id is blank")
        return value

    @field_validator("title")
    @classmethod
    def _title_within_limit(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode("utf-8", "surrogatepass")) > MAX_TITLE_BYTES:
            raise ValueError(f"title longer than {MAX_TITLE_BYTES} bytes")
        return value

    @field_validator("timestamp")
    @classmethod
    def _finite_timestamp(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("timestamp is not finite")
        return value

    def model_text(self) -> str:
        """The text the model reads (:func:`model_input`)."""
        return model_input(self.title, self.text)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")


class Retraction(BaseModel):
    """A delete (topic ``reviews``, ``{"op": "delete", "review_id", "product_id"}``): the review leaves every
    aggregate. A ``version`` or ``timestamp`` older than the counted review's makes it a stale re-send."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    schema_version: int = SCHEMA_VERSION
    op: Literal["delete"] = "delete"
    review_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    product_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    version: int | None = Field(default=None, ge=0)
    timestamp: float | None = None

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")


# Each field's default, in field order (the required ids and text are always given on the fast path).
_REVIEW_DEFAULTS: dict[str, Any] = {name: f.default for name, f in Review.model_fields.items()}
_RETRACTION_DEFAULTS: dict[str, Any] = {name: f.default for name, f in Retraction.model_fields.items()}


def supersedes(new_version: int | None, new_time: float | None,
               old_version: int | None, old_time: float | None) -> bool:
    """Whether a message about a review replaces what was counted for it: a higher version where both have one,
    else a later event time where both have one; otherwise it is a re-send (the first one counted stays).

    The Redis script (``reviews_mtl/aggregates/apply_batch.lua``, ``newer``) applies the same rule; tests hold
    the two together. Event times compare in whole seconds, as the script stores them.
    """
    if new_version is not None and old_version is not None:
        return new_version > old_version
    if new_version is None and old_version is None and new_time is not None and old_time is not None:
        return int(new_time) > int(old_time)
    return False


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """A message that is not a valid review: the raw bytes stay untouched for the DLQ."""

    reason: DecodeReason
    detail: str
    raw: bytes | None

    @property
    def error_class(self) -> str:
        if self.reason is DecodeReason.INTERNAL_ERROR:
            return "InternalError"
        return "DecodeError" if self.reason in _BYTE_LEVEL_REASONS else "ContractError"


# Reasons found before there is an object to validate; the rest break the contract itself.
_BYTE_LEVEL_REASONS = frozenset({DecodeReason.EMPTY_VALUE, DecodeReason.INVALID_UTF8, DecodeReason.INVALID_JSON})

_REQUIRED = ("review_id", "product_id", "text")
_REQUIRED_FOR_DELETE = ("review_id", "product_id")


# Event times outside this window are refused: before the web had reviews, or more than a day ahead of this
# clock (a unit mistake such as milliseconds, or a broken producer clock).
EARLIEST_TIMESTAMP = 631152000.0  # 1990-01-01T00:00:00Z
MAX_CLOCK_SKEW_S = 86400.0


def _timestamp_to_epoch(obj: dict[str, Any]) -> str | None:
    """Accept ISO-8601 strings (with a timezone) for ``timestamp`` as epoch seconds; returns why it is refused."""
    ts = obj.get("timestamp")
    if isinstance(ts, str):
        try:
            parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return None  # an unparseable string stays: validation reports it as a wrong type
        if parsed.tzinfo is None:
            return "timestamp: a timezone is required (for example 2026-01-01T00:00:00Z)"
        try:
            ts = obj["timestamp"] = parsed.timestamp()
        except (OverflowError, OSError, ValueError):
            return "timestamp: out of range"
    elif isinstance(ts, int) and not isinstance(ts, bool):
        ts = obj["timestamp"] = float(ts) if abs(ts) < 1e18 else float("inf")
    if isinstance(ts, float) and not EARLIEST_TIMESTAMP <= ts <= time.time() + MAX_CLOCK_SKEW_S:
        return "timestamp: not a plausible event time (epoch seconds, 1990 to now)"
    return None


# C0 and C1 control characters and DEL: not allowed in ids, user ids and categories.
_ID_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _control_character_field(obj: dict[str, Any]) -> str | None:
    for name in ("review_id", "product_id", "user_id", "category"):
        value = obj.get(name)
        if isinstance(value, str) and _ID_CONTROL_CHARACTERS.search(value) is not None:
            return f"{name}: control characters are not allowed"
    return None


def validate_review_object(obj: object) -> Review | DecodeFailure:
    """Validate an already-parsed object as a review to predict (a retraction is refused here)."""
    result = validate_message_object(obj)
    if isinstance(result, Retraction):
        return DecodeFailure(DecodeReason.INVALID_FIELD, "op: a delete is not a review to predict", None)
    return result


def validate_message_object(obj: object) -> Review | Retraction | DecodeFailure:
    """Validate an already-parsed object (from JSON, CSV or Parquet) against the input contract."""
    checked = _precheck(obj)
    if isinstance(checked, DecodeFailure):
        return checked
    op, fields = checked
    built = _checked_retraction(fields) if op == "delete" else _checked_review(fields)
    return built if built is not None else _validate_fields(op, fields)


def _precheck(obj: object) -> tuple[str, dict[str, Any]] | DecodeFailure:
    """The contract's checks that name a reason of their own; returns the op and the fields to validate (a copy,
    with control characters stripped from text and title and the timestamp as epoch seconds)."""
    if not isinstance(obj, dict):
        return DecodeFailure(DecodeReason.NOT_AN_OBJECT, f"expected a JSON object, got {type(obj).__name__}", None)
    version = obj.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        return DecodeFailure(DecodeReason.WRONG_TYPE, "schema_version must be an integer", None)
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        return DecodeFailure(
            DecodeReason.UNKNOWN_SCHEMA_VERSION,
            f"schema_version {version} not in {sorted(SUPPORTED_SCHEMA_VERSIONS)}",
            None,
        )
    op = obj.get("op", "upsert")
    if op not in ("upsert", "delete"):
        return DecodeFailure(DecodeReason.INVALID_FIELD, f"op: {str(op)[:40]!r} is neither 'upsert' nor 'delete'", None)
    fields = dict(obj)
    for name in ("text", "title"):
        value = fields.get(name)
        if isinstance(value, str):
            fields[name] = strip_control_characters(value)
    for name in _REQUIRED_FOR_DELETE if op == "delete" else _REQUIRED:
        if fields.get(name) is None:
            return DecodeFailure(DecodeReason[f"MISSING_{name.upper()}"], f"{name} is required", None)
        value = fields[name]
        if not isinstance(value, str):
            return DecodeFailure(DecodeReason.WRONG_TYPE, f"{name} must be a string, got {type(value).__name__}", None)
        if not value.strip():
            return DecodeFailure(DecodeReason[f"EMPTY_{name.upper()}"], f"{name} is empty", None)
    if op == "upsert" and _utf8_size(fields["text"]) > MAX_TEXT_BYTES:
        return DecodeFailure(
            DecodeReason.TEXT_TOO_LONG, f"text is longer than the limit of {MAX_TEXT_BYTES} bytes", None
        )
    refused = _control_character_field(fields) or _timestamp_to_epoch(fields)
    if refused is not None:
        return DecodeFailure(DecodeReason.INVALID_FIELD, refused, None)
    rating = fields.get("rating")
    if isinstance(rating, float) and rating.is_integer():
        fields["rating"] = int(rating)  # JSON writers often send 5 as 5.0; 4.5 is still refused
    if op == "upsert":
        fields.pop("op", None)
    return op, fields


def _validate_fields(op: str, fields: dict[str, Any]) -> Review | Retraction | DecodeFailure:
    """Pydantic's validation of pre-checked fields, whose first error becomes the failure's reason."""
    try:
        if op == "delete":
            return Retraction.model_validate(fields)
        return Review.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        reason = DecodeReason.WRONG_TYPE if first["type"].endswith("_type") else DecodeReason.INVALID_FIELD
        return DecodeFailure(reason, f"{where}: {first['msg']}", None)


def _utf8_size(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


def _plain_string(value: str) -> bool:
    """A string pydantic takes as it is: valid UTF-8 (a lone surrogate is refused by length-checked fields)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# The fast path of validation (the hot path of every worker): fields that are plainly valid (exact JSON types,
# within every limit; the pre-checks ran already) are built into the model without validating them a second time.
# Anything else goes through pydantic, which decides and words the error. A test holds the two paths equal.
_OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {
    "title": (str,), "rating": (int,), "category": (str,), "timestamp": (float,), "verified": (bool,),
    "user_id": (str,), "version": (int,),
}


def _checked_review(fields: dict[str, Any]) -> Review | None:
    review_id, product_id, text = fields["review_id"], fields["product_id"], fields["text"]
    if type(review_id) is not str or type(product_id) is not str or type(text) is not str \
            or len(review_id) > MAX_ID_CHARS or len(product_id) > MAX_ID_CHARS \
            or not (_plain_string(review_id) and _plain_string(product_id) and _plain_string(text)):
        return None
    if type(fields.get("schema_version", SCHEMA_VERSION)) is not int:
        return None
    for name, kinds in _OPTIONAL_TYPES.items():
        value = fields.get(name)
        if value is not None and (type(value) not in kinds or (type(value) is str and not _plain_string(value))):
            return None
    rating, version, title = fields.get("rating"), fields.get("version"), fields.get("title")
    if (rating is not None and not 1 <= rating <= 5) or (version is not None and version < 0) \
            or (title is not None and _utf8_size(title) > MAX_TITLE_BYTES):
        return None
    return _construct(Review, _REVIEW_DEFAULTS, fields)


def _checked_retraction(fields: dict[str, Any]) -> Retraction | None:
    review_id, product_id = fields["review_id"], fields["product_id"]
    if type(review_id) is not str or type(product_id) is not str \
            or len(review_id) > MAX_ID_CHARS or len(product_id) > MAX_ID_CHARS \
            or not (_plain_string(review_id) and _plain_string(product_id)):
        return None
    if type(fields.get("schema_version", SCHEMA_VERSION)) is not int or fields.get("op") != "delete":
        return None
    version, timestamp = fields.get("version"), fields.get("timestamp")
    if (version is not None and (type(version) is not int or version < 0)) \
            or (timestamp is not None and type(timestamp) is not float):
        return None
    return _construct(Retraction, _RETRACTION_DEFAULTS, fields)


_M = TypeVar("_M", bound=BaseModel)


def _construct(cls: type[_M], defaults: dict[str, Any], fields: dict[str, Any]) -> _M:
    """What ``cls.model_validate(fields)`` builds from plainly valid fields (the same values, fields set and
    order), as ``model_construct`` does it, without its per-field bookkeeping."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", {name: fields.get(name, default) for name, default in defaults.items()})
    object.__setattr__(model, "__pydantic_fields_set__", {name for name in fields if name in defaults})
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


# Where orjson reads a message differently from the standard library, the standard library reads it: deep nesting
# (its recursion limit refuses it), and integers past 64 bits (orjson makes them floats: a float field that large
# is read again). Values other than objects are refused anyway; the standard library words their failure.
_MAX_FAST_NESTING = 64
_LARGEST_EXACT_INT = float(2**63)
_SLOW = object()


def _parse_fast(raw: bytes) -> object:
    """The object ``json.loads(raw.decode("utf-8"))`` gives, as far as the contract reads it (its top-level
    values), by orjson; ``_SLOW`` where orjson may differ or fails."""
    if raw.count(b"[") + raw.count(b"{") > _MAX_FAST_NESTING:
        return _SLOW
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:  # NaN, Infinity, lone surrogates, bad UTF-8...: the standard library decides
        return _SLOW
    if type(obj) is not dict:
        return _SLOW
    for value in obj.values():
        if type(value) is float and not -_LARGEST_EXACT_INT < value < _LARGEST_EXACT_INT:
            return _SLOW
    return obj


def _parse_slow(raw: bytes) -> object:
    """The reference decoding (UTF-8, then the standard library's JSON); a :class:`DecodeFailure` when it fails."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return DecodeFailure(DecodeReason.INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}", raw)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return DecodeFailure(DecodeReason.INVALID_JSON, f"invalid JSON: {exc}"[:300], raw)


def decode_review(raw: bytes | None) -> Review | Retraction | DecodeFailure:
    """Decode one message value. Never raises: bad input becomes a :class:`DecodeFailure`."""
    if not raw:
        return DecodeFailure(DecodeReason.EMPTY_VALUE, "message has no value", raw)
    obj = _parse_fast(raw) if type(raw) is bytes else _SLOW
    if obj is _SLOW:
        obj = _parse_slow(raw)
        if isinstance(obj, DecodeFailure):
            return obj
    result = validate_message_object(obj)
    if isinstance(result, DecodeFailure):
        return DecodeFailure(result.reason, result.detail, raw)
    return result


class SentimentResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: SentimentLabel
    confidence: float
    probabilities: dict[str, float]


class Prediction(BaseModel):
    """What the model says about one text; the prediction fields of the enriched record."""

    model_config = ConfigDict(frozen=True)

    sentiment: SentimentResult
    rating: float = Field(ge=1.0, le=5.0)
    # The most likely star, where the model's rating head gives a star distribution (else None).
    stars: int | None = Field(default=None, ge=1, le=5)
    aspects: dict[str, float]
    aspects_detected: list[str]


class SourceCoordinates(BaseModel):
    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int


class EnrichedRecord(BaseModel):
    """One enriched review (topic ``reviews.enriched``, key = ``product_id``): the input ids, the prediction
    fields of :class:`Prediction`, the model, timing, and where the review came from."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    review_id: str
    product_id: str
    sentiment: SentimentResult
    rating: float = Field(ge=1.0, le=5.0)
    stars: int | None = Field(default=None, ge=1, le=5)  # as in Prediction
    aspects: dict[str, float]
    aspects_detected: list[str]
    true_rating: int | None = None
    category: str | None = None
    timestamp: float | None = None
    model_name: str
    model_version: str
    # onnx-int8, onnx-fp32, torch-cuda, ...: replays and re-scores must be comparable with what was counted.
    model_runtime: str | None = None
    processed_at: float
    processing_ms: float
    source: SourceCoordinates
    # The review's version when it has one; an enriched record of a review counted before is its edit.
    version: int | None = None

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")


class RetractionRecord(BaseModel):
    """A delete that was applied (topic ``reviews.enriched``, key = ``product_id``): the review with this id no
    longer counts. Readers tell it from an :class:`EnrichedRecord` by ``op``."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    op: Literal["delete"] = "delete"
    review_id: str
    product_id: str
    version: int | None = None
    timestamp: float | None = None
    processed_at: float
    source: SourceCoordinates

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")


# Dead-letter headers: the value is the original bytes, untouched.
DLQ_HEADER_ERROR_CLASS = "x-error-class"
DLQ_HEADER_REASON = "x-error-reason"
DLQ_HEADER_DETAIL = "x-error-detail"
DLQ_HEADER_TOPIC = "x-source-topic"
DLQ_HEADER_PARTITION = "x-source-partition"
DLQ_HEADER_OFFSET = "x-source-offset"
DLQ_HEADER_SCHEMA = "x-schema-version"
# Only on a dead letter whose value was cut to fit the DLQ (or dropped, when even its headers did not fit).
DLQ_HEADER_ORIGINAL_SIZE = "x-original-size"
DLQ_HEADER_ORIGINAL_SHA256 = "x-original-sha256"


class DeadLetter(BaseModel):
    """A message that could not be processed, as its headers describe it."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    error_class: str
    reason: str
    detail: str
    source: SourceCoordinates
    raw: bytes | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (DLQ_HEADER_SCHEMA, str(self.schema_version).encode()),
            (DLQ_HEADER_ERROR_CLASS, self.error_class.encode()),
            (DLQ_HEADER_REASON, self.reason.encode()),
            (DLQ_HEADER_DETAIL, self.detail.encode("utf-8", "replace")[:1000]),
            (DLQ_HEADER_TOPIC, self.source.topic.encode()),
            (DLQ_HEADER_PARTITION, str(self.source.partition).encode()),
            (DLQ_HEADER_OFFSET, str(self.source.offset).encode()),
        ]

    @classmethod
    def from_failure(cls, failure: DecodeFailure, topic: str, partition: int, offset: int) -> DeadLetter:
        return cls(
            error_class=failure.error_class,
            reason=failure.reason.value,
            detail=failure.detail,
            source=SourceCoordinates(topic=topic, partition=partition, offset=offset),
            raw=failure.raw,
        )

    @classmethod
    def from_headers(cls, headers: object, value: bytes | None) -> DeadLetter:
        """Read the headers of a DLQ message (a list of (name, value) pairs, as Kafka clients return them)."""
        pairs = headers.items() if isinstance(headers, dict) else headers or []
        h: dict[str, str] = {}
        for k, v in pairs:  # type: ignore[attr-defined]
            h[str(k)] = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")
        try:
            return cls(
                schema_version=int(h.get(DLQ_HEADER_SCHEMA, SCHEMA_VERSION)),
                error_class=h[DLQ_HEADER_ERROR_CLASS],
                reason=h[DLQ_HEADER_REASON],
                detail=h.get(DLQ_HEADER_DETAIL, ""),
                source=SourceCoordinates(
                    topic=h[DLQ_HEADER_TOPIC],
                    partition=int(h[DLQ_HEADER_PARTITION]),
                    offset=int(h[DLQ_HEADER_OFFSET]),
                ),
                raw=value,
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"not a dead-letter record: {exc}") from exc
