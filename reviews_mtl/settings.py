"""Runtime settings, one frozen class per service, every field also an environment variable.

They are the one owner of the environment: the services read their settings here, and every CLI takes the
defaults of its flags from a class here (``TrainSettings``, ``EvalSettings``, ``ProducerCliSettings``,
``DemoSettings``, ``ApiSettings``, ``DataSettings``, ``BackfillSettings``), so a flag wins over its variable,
which wins over the default. :func:`env_names` lists every variable, and the deployment tests hold the manifests to it.

``KafkaSettings.as_librdkafka_dict`` is the one place that renders librdkafka's dotted keys, including
SASL and SSL, so every client (producer, consumer, admin) talks to a secured cluster the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
AutoOffsetReset = Literal["earliest", "latest", "error"]
RuntimeKind = Literal["auto", "onnx-int8", "onnx-fp32", "torch"]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _frozen(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="ignore", case_sensitive=False)


def _cli_defaults(prefix: str) -> SettingsConfigDict:
    """A CLI's defaults: an empty variable counts as unset; a field may keep an older, unprefixed name
    (``Field(validation_alias=...)``), and is still set by its field name in code."""
    return SettingsConfigDict(
        env_prefix=prefix, frozen=True, extra="ignore", case_sensitive=False, env_ignore_empty=True,
        validate_by_name=True,
    )


# A list in one variable, separated like PATH (``a.jsonl:b.csv``), not JSON.
PathSeparatedList = Annotated[list[str] | None, NoDecode]


def _split_path_list(value: Any) -> Any:
    return value.split(os.pathsep) if isinstance(value, str) else value


class KafkaSettings(BaseSettings):
    """How to reach the brokers (env ``KAFKA_*``)."""

    model_config = _frozen("KAFKA_")

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    client_id: str = "reviews-mtl"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_endpoint_identification: bool = True

    def as_librdkafka_dict(self) -> dict[str, Any]:
        """Connection keys for any confluent-kafka client; callers add their role's own keys."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ValueError(f"security_protocol {self.security_protocol} needs KAFKA_SASL_MECHANISM")
            conf["sasl.mechanism"] = self.sasl_mechanism
            if self.sasl_username is not None:
                conf["sasl.username"] = self.sasl_username
            if self.sasl_password is not None:
                conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.security_protocol.endswith("SSL"):
            optional = {
                "ssl.ca.location": self.ssl_ca_location,
                "ssl.certificate.location": self.ssl_certificate_location,
                "ssl.key.location": self.ssl_key_location,
            }
            conf.update({k: str(v) for k, v in optional.items() if v is not None})
            if self.ssl_key_password is not None:
                conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            conf["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_endpoint_identification else "none"
        return conf


class RedisSettings(BaseSettings):
    """Where the aggregates live (env ``REDIS_*``). A password in the URL is treated as a secret too."""

    model_config = _frozen("REDIS_")

    url: SecretStr = SecretStr(DEFAULT_REDIS_URL)
    password: SecretStr | None = None
    key_prefix: str = "rmtl"
    socket_timeout_s: float = 5.0
    # What a worker does at start when Redis can lose acknowledged writes (no AOF, fsync every second without
    # WAITAOF, an eviction policy): warn (log + metric), refuse to start, or say nothing.
    durability: Literal["off", "warn", "require"] = "warn"
    # After each batch, wait for this many replicas to hold it (WAIT) before the Kafka commit.
    wait_replicas: int = Field(default=0, ge=0)
    wait_timeout_ms: int = Field(default=2000, ge=1)
    # The read side (API, page, CLI) reads the prefix this key names, else ``key_prefix``: ``reviews-mtl
    # aggregates promote NEW`` sets it, so readers switch to a backfilled prefix in one atomic write.
    active_prefix_key: str = "rmtl:active-prefix"


class TopicSettings(BaseSettings):
    """Topic names (env ``REVIEWS_TOPIC_*``)."""

    model_config = _frozen("REVIEWS_TOPIC_")

    input: str = "reviews"
    enriched: str = "reviews.enriched"
    dlq: str = "reviews.dlq"
    alerts: str = "reviews.alerts"
    # What a shadow model (``consume --shadow-model``) predicts: never counted in the aggregates.
    enriched_shadow: str = "reviews.enriched.shadow"
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class AnalyticsSettings(BaseSettings):
    """What the aggregates keep beyond lifetime counts (env ``REVIEWS_AGG_*``): per-day buckets, half-life scores,
    the last reviews of each product, alerts. ``bucket_s`` and ``half_life_s`` are fixed for a key prefix by its
    first batch (stored contributions depend on them)."""

    model_config = _frozen("REVIEWS_AGG_")

    bucket_s: int = Field(default=86_400, ge=60)
    retention_days: float = Field(default=90.0, gt=0)
    half_life_s: float = Field(default=7 * 86_400.0, gt=0)
    recent_reviews: int = Field(default=10, ge=1, le=1000)
    # An alert: the recent (half-life) negative share, or an aspect's recent complaint rate, exceeds the product's
    # lifetime share by at least alert_min_delta, with at least alert_min_recent recent reviews; at most one per
    # product, kind and cool-down.
    alert_min_recent: float = Field(default=5.0, ge=0)
    alert_min_delta: float = Field(default=0.25, gt=0, le=1)
    alert_cooldown_s: int = Field(default=86_400, ge=1)
    # Reviews with stars in the worker's sliding window of live quality (Prometheus gauges).
    quality_window: int = Field(default=1000, ge=10)

    def script_options(self) -> dict[str, float]:
        return {"bucket_s": self.bucket_s, "retention_s": self.retention_days * 86_400.0,
                "half_life_s": self.half_life_s, "recent": self.recent_reviews,
                "alert_min_recent": self.alert_min_recent, "alert_min_delta": self.alert_min_delta,
                "alert_cooldown_s": self.alert_cooldown_s}


class ProducerSettings(BaseSettings):
    """The review publisher (env ``REVIEWS_PRODUCER_*``)."""

    model_config = _frozen("REVIEWS_PRODUCER_")

    compression: Compression = "lz4"
    linger_ms: int = Field(default=5, ge=0)
    batch_size: int = Field(default=131072, ge=1)
    delivery_timeout_ms: int = Field(default=30000, ge=1000)
    rate: float | None = Field(default=None, gt=0, description="records per second; unlimited when unset")
    on_invalid: Literal["skip", "fail"] = "skip"

    def as_librdkafka_dict(self) -> dict[str, Any]:
        return {
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": self.compression,
            "linger.ms": self.linger_ms,
            "batch.size": self.batch_size,
            "delivery.timeout.ms": self.delivery_timeout_ms,
        }


class ConsumerSettings(BaseSettings):
    """The worker (env ``REVIEWS_CONSUMER_*``)."""

    model_config = _frozen("REVIEWS_CONSUMER_")

    group_id: str = "reviews-mtl"
    model_dir: Path = Path("artifacts/demo")
    runtime: RuntimeKind = "auto"
    batch_max_records: int = Field(default=256, ge=1)
    # The batch waits this long from the loop's call even when records are queued, and a review that arrives
    # while a batch is processed waits out the next window too: at half load on 2 cores 200 ms put p99 at
    # 1.4 s, 50 ms at 0.38 s, with the same maximum throughput (full batches close on batch_max_records).
    batch_max_wait_ms: int = Field(default=50, ge=1)
    # Close a batch early once the local queue stays empty this long (0 = off). It lowers latency where a
    # transaction commit is cheap (Apache Kafka); where it is slow (Tansu) many small batches cost more.
    batch_idle_close_ms: int = Field(default=0, ge=0)
    # Adaptive micro-batches (consumer.batcher.AdaptiveBatcher): each batch's size and wait follow what the last
    # ones cost and the p99 latency target; batch_max_records bounds a batch while the queue is shallow,
    # batch_deep_max_records while it stays deeper than a batch, batch_max_wait_ms the wait. Off: fixed bounds.
    batch_adaptive: bool = True
    latency_target_ms: int = Field(default=1000, ge=10)
    batch_deep_max_records: int = Field(default=1024, ge=1)
    transactions: bool = True
    transactional_id_prefix: str = "reviews-mtl"
    # Who this process is, for its transactional id: in Kubernetes the pod name (a StatefulSet ordinal keeps it
    # across restarts, so a restarted pod fences its predecessor). Empty: unique per process.
    instance_id: str = ""
    # A crashed worker's open transaction holds back read_committed readers until the broker aborts it:
    # keep that short. It must exceed the time one batch takes to process and commit.
    transaction_timeout_ms: int = Field(default=15000, ge=1000)
    auto_offset_reset: AutoOffsetReset = "earliest"
    session_timeout_ms: int = Field(default=45000, ge=6000)
    max_poll_interval_ms: int = Field(default=300000, ge=10000)
    drain_timeout_s: float = Field(default=20.0, gt=0)
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    # Where /metrics, /healthz and /readyz listen: every interface for Prometheus and kubelet probes by default.
    metrics_host: str = "0.0.0.0"
    replicas: int = Field(default=1, ge=1)
    intra_op_threads: int = Field(default=0, ge=0, description="ONNX Runtime threads; 0 = one per core")
    # Rows per model call inside a micro-batch: 64 suits a CPU; 0 runs the whole micro-batch in one call
    # (what a GPU wants, with batch_max_records raised to ~1024).
    inference_batch_size: int = Field(default=64, ge=0)
    # A dead letter carries at most this much of the bad value (its full size and SHA-256 in headers): keep it
    # below the DLQ topic's max.message.bytes less room for headers, or the DLQ refuses it.
    dlq_max_value_bytes: int = Field(default=256 * 1024, ge=1024)
    # The same batch failing this many times in a row marks the worker not ready (the circuit breaker).
    stuck_after_failures: int = Field(default=5, ge=1)
    # How often a partition set aside (its aggregates cannot be trusted) is checked again.
    integrity_recheck_s: float = Field(default=5.0, gt=0)
    # Hot reload: between batches, at most this often, the worker looks for a new artifact at model_dir (its
    # resolved path and config.json's mtime); SIGHUP looks at once. 0 = only on SIGHUP.
    model_check_interval_s: float = Field(default=10.0, ge=0)
    # A candidate model run beside the live one on the same batches; its predictions go to the shadow topic only.
    shadow_model_dir: Path | None = None
    # The share of batches the shadow model sees (1 = every batch).
    shadow_share: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _drain_outlasts_a_transaction_call(self) -> ConsumerSettings:
        # With the coordinator away, a transaction call in progress when SIGTERM arrives can block for the
        # transaction timeout; the drain bound must leave room for it and for leaving the group.
        if self.drain_timeout_s < self.transaction_timeout_ms / 1000 + 3:
            raise ValueError(
                f"drain_timeout_s ({self.drain_timeout_s:g}) must be at least transaction_timeout_ms / 1000 + 3 "
                f"({self.transaction_timeout_ms / 1000 + 3:g}): REVIEWS_CONSUMER_DRAIN_TIMEOUT_S, "
                "REVIEWS_CONSUMER_TRANSACTION_TIMEOUT_MS")
        return self


class StackSettings(BaseSettings):
    """The embedded local stack (env ``REVIEWS_STACK_*``)."""

    model_config = _frozen("REVIEWS_STACK_")

    state_dir: Path = Path(".reviews-mtl/stack")
    broker: Literal["apache", "tansu"] = Field(
        default="apache", description="apache: Kafka 4.1 from Maven Central jars (needs Java); tansu: no JVM"
    )
    kafka_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    redis_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    start_timeout_s: float = Field(default=60.0, gt=0)


class DataSettings(BaseSettings):
    """Where the review data is (env ``REVIEWS_DATA_DIR``; unset: ``../shared/data``, else the sample)."""

    model_config = _cli_defaults("REVIEWS_DATA_")

    dir: Path | None = None


class TrainSettings(BaseSettings):
    """``reviews-mtl train`` (env ``REVIEWS_TRAIN_*``, and the older names given as aliases). Unset fields
    leave the preset's value."""

    model_config = _cli_defaults("REVIEWS_TRAIN_")

    preset: Literal["demo", "full"] = "demo"
    epochs: int | None = None
    batch_size: int | None = None
    steps_per_epoch: int | None = None
    max_reviews: int | None = None
    time_budget: float | None = Field(default=None, description="seconds; training stops at the end of an epoch")
    output: Path | None = Field(default=None, validation_alias="REVIEWS_MODEL_OUTPUT")
    encoder: str | None = Field(default=None, validation_alias="REVIEWS_ENCODER")
    max_length: int | None = Field(default=None, validation_alias="REVIEWS_MAX_LENGTH")
    threads: int | None = Field(default=None, validation_alias="REVIEWS_TORCH_THREADS")
    seed: int | None = Field(default=None, validation_alias="REVIEWS_SEED")
    no_progress: bool = Field(default=False, validation_alias="REVIEWS_NO_PROGRESS")
    rating_head: Literal["regression", "stars", "ordinal"] | None = None
    truncation: Literal["head", "head_tail"] | None = None
    freeze_layers: int | None = Field(default=None, ge=0)
    cache_activations: bool | None = None
    cache_dir: Path | None = None
    linear_probe_steps: int | None = Field(default=None, ge=0)
    calibrate: bool | None = None
    aspect_pos_weight: float | None = Field(default=None, ge=0)
    soft_labels: Path | None = None
    distill_weight: float | None = Field(default=None, ge=0, le=1)


class EvalSettings(BaseSettings):
    """``reviews-mtl evaluate`` and ``predict`` (env ``REVIEWS_EVAL_*``, ``REVIEWS_MODEL_DIR``,
    ``REVIEWS_RUNTIME``, ``REVIEWS_INTRA_OP_THREADS``)."""

    model_config = _cli_defaults("REVIEWS_EVAL_")

    max_reviews: int = 0
    model_dir: Path | None = Field(default=None, validation_alias="REVIEWS_MODEL_DIR")
    # Unset: evaluate scores onnx-int8 (what a CPU worker runs), predict picks ("auto").
    runtime: RuntimeKind | None = Field(default=None, validation_alias="REVIEWS_RUNTIME")
    intra_op_threads: int = Field(default=0, ge=0, validation_alias="REVIEWS_INTRA_OP_THREADS")
    split: Literal["test", "validation"] = "test"


class ProducerCliSettings(BaseSettings):
    """``reviews-mtl produce``'s inputs and output (env ``REVIEWS_PRODUCER_*``; how it sends is
    :class:`ProducerSettings`)."""

    model_config = _cli_defaults("REVIEWS_PRODUCER_")

    input: PathSeparatedList = None
    from_data: Path | None = None
    sources: PathSeparatedList = None
    format: Literal["jsonl", "csv", "parquet"] | None = None
    limit: int | None = None
    shuffle: bool = False
    seed: int = 0
    export_jsonl: Path | None = None
    json_summary: bool = Field(default=False, validation_alias="REVIEWS_PRODUCER_JSON")
    no_progress: bool = False
    stamp_now: bool = False

    _split_lists = field_validator("input", "sources", mode="before")(_split_path_list)


class DemoSettings(BaseSettings):
    """``make demo`` / ``python -m reviews_mtl.demo`` (env ``REVIEWS_DEMO_*``)."""

    model_config = _cli_defaults("REVIEWS_DEMO_")

    reviews: int = Field(default=4000, ge=1)
    replicas: int = Field(default=2, ge=1)
    model: Path | None = Field(default=None, description="an artifact directory; unset: the cached demo model")


class ApiSettings(BaseSettings):
    """``reviews-mtl aggregates serve``, the HTTP read API (env ``REVIEWS_API_*``)."""

    model_config = _cli_defaults("REVIEWS_API_")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class BackfillSettings(BaseSettings):
    """``reviews-mtl backfill``: re-score the input topic into a new key prefix (env ``REVIEWS_BACKFILL_*``).
    The worker's own settings (batching, threads, transactions) come from :class:`ConsumerSettings`."""

    model_config = _cli_defaults("REVIEWS_BACKFILL_")

    model_dir: Path | None = None
    key_prefix: str | None = None
    # Where the backfill starts when its group has no committed offsets yet: "beginning", or a time
    # (``2h``, ISO-8601 with a timezone, epoch seconds) looked up with offsets-for-times.
    since: str | None = None
    # Reviews per second at most, so it runs beside the live workers without starving them (unset: unbounded).
    rate: float | None = Field(default=None, gt=0)
    # Keep following the topic once caught up (the live writer of the new prefix) instead of stopping there.
    follow: bool = False
    # Unset: derived from the prefix (``{group}.backfill.{prefix}``, ``{enriched}.{prefix}``, ``{dlq}.{prefix}``).
    group_id: str | None = None
    enriched_topic: str | None = None
    dlq_topic: str | None = None
    progress_interval_s: float = Field(default=5.0, gt=0)


class ModelToolSettings(BaseSettings):
    """``reviews-mtl distill``, ``quantize`` and ``eda`` (env ``REVIEWS_DISTILL_*``-style names below)."""

    model_config = _cli_defaults("REVIEWS_")

    distill_teacher: Path | None = None  # the teacher artifact whose outputs become soft labels
    distill_output: Path | None = None  # the soft-labels file to write (.npz)
    quantize_all: bool = False  # score every int8 candidate, not only up to the first that meets the rule
    eda_output: Path | None = None  # the folder of the EDA page
    encoder_cache: Path | None = None  # converted encoders (bge-small, mpnet); default ~/.cache/reviews-mtl/encoders


SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    KafkaSettings, RedisSettings, TopicSettings, AnalyticsSettings, ProducerSettings, ConsumerSettings, StackSettings,
    DataSettings, TrainSettings, EvalSettings, ProducerCliSettings, DemoSettings, ApiSettings, BackfillSettings,
    ModelToolSettings,
)


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The variable that sets one field: its alias where it has one, else env prefix + field name."""
    alias = cls.model_fields[field].validation_alias
    return (alias if isinstance(alias, str) else f"{cls.model_config['env_prefix']}{field}").upper()


def env_names() -> set[str]:
    """Every environment variable a settings class here reads."""
    return {env_name(cls, name) for cls in SETTINGS_CLASSES for name in cls.model_fields}


def invalid_variable(exc: ValidationError) -> str:
    """One line naming the variable a settings class refused, e.g. ``REVIEWS_API_PORT: Input should be ...``."""
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    cls = next((c for c in SETTINGS_CLASSES if c.__name__ == exc.title), None)
    name = env_name(cls, field) if cls is not None and field in cls.model_fields else field.upper()
    return f"invalid environment variable {name}: {first['msg']}"
