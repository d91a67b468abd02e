"""Assemble one worker process from settings: model, Redis, Kafka clients, metrics and probes."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import redis
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from consumer.batcher import AdaptivePolicy
from consumer.http import serve
from consumer.live_quality import LiveQuality
from consumer.metrics import WorkerMetrics
from consumer.model_reload import Fingerprint, ModelReloader, fingerprint
from consumer.output import KafkaOutput
from consumer.processing import BatchProcessor, Predictor
from consumer.shadow import ShadowProcessor
from consumer.worker import BetweenBatches, Processes, Worker, WorkerOptions
from reviews_mtl.aggregates.durability import DurabilityWait, read_durability
from reviews_mtl.aggregates.prefixes import record_model
from reviews_mtl.aggregates.store import AggregateStore
from reviews_mtl.kafka import make_consumer, make_producer, topic_id
from reviews_mtl.model.artifact import prediction_reference
from reviews_mtl.settings import (
    AnalyticsSettings,
    ConsumerSettings,
    KafkaSettings,
    ProducerSettings,
    RedisSettings,
    TopicSettings,
)

log = logging.getLogger(__name__)


@dataclass
class WorkerProcess:
    worker: Worker
    http: ThreadingHTTPServer | None
    registry: CollectorRegistry
    reloader: ModelReloader | None = None


def transactional_id(settings: ConsumerSettings, replica: int | None) -> str:
    """Unique per live process: zombies are fenced by the consumer group generation (KIP-447), so the id need
    not follow partitions. A stable ``instance_id`` (a pod name) makes a restart fence its predecessor; the
    supervisor gives each of its runs its own instance id, so two supervisors on one host never collide."""
    host = socket.gethostname()
    instance = settings.instance_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    suffix = f"{instance}-r{replica}" if replica is not None else instance
    return f"{settings.transactional_id_prefix}-{settings.group_id}-{host}-{suffix}"


class RedisNotDurable(RuntimeError):
    """Redis can lose acknowledged writes and ``REDIS_DURABILITY=require``: the worker does not start."""


def prepare_redis(store: AggregateStore, settings: RedisSettings, metrics: WorkerMetrics) -> None:
    """Judge Redis's durability once (see ``reviews_mtl.aggregates.durability``) and set what the store waits for
    after each batch; raises :class:`RedisNotDurable` under ``require``."""
    report = read_durability(store.client)
    problems = report.problems(settings.wait_replicas)
    metrics.redis_durability_problems.set(len(problems))
    if problems and settings.durability == "require":
        raise RedisNotDurable("; ".join(problems))
    if settings.durability == "warn":
        for problem in problems:
            log.warning("Redis durability: %s", problem)
    store.durability_wait = DurabilityWait(report.waitaof and settings.durability != "off", settings.wait_replicas,
                                           settings.wait_timeout_ms)


def coarse_reason(reason: str) -> str:
    """What ``/readyz`` says of a degraded worker: which system is away, never the error text."""
    system = reason.split(":", 1)[0]
    return f"{system} unavailable" if system in ("redis", "kafka") else "degraded"


def load_model(settings: ConsumerSettings, directory: Path | None = None) -> Predictor:
    """The model at ``directory`` (default: ``settings.model_dir``) with the worker's runtime and batch size."""
    from reviews_mtl.model.runtime import load_predictor

    batch_size = settings.inference_batch_size or settings.batch_max_records
    return load_predictor(directory if directory is not None else settings.model_dir, runtime=settings.runtime,
                          intra_op_threads=settings.intra_op_threads, batch_size=batch_size)


def current_artifact(settings: ConsumerSettings) -> Fingerprint | None:
    """The artifact ``--model PATH`` names now (a link resolved), or None when it is not there (the load says why)."""
    try:
        return fingerprint(settings.model_dir)
    except OSError:
        return None


class ModelNote:
    """Notes in Redis which model writes under the prefix (``aggregates prefixes``), once Redis answers."""

    def __init__(self, store: AggregateStore, predictor: Predictor) -> None:
        self.store = store
        self.pending: Predictor | None = predictor

    def __call__(self, handled: int = 0) -> None:
        p = self.pending
        if p is None:
            return
        try:
            record_model(self.store.client, self.store.prefix, p.model_name, p.model_version, p.runtime)
            self.pending = None
        except redis.RedisError as exc:  # only a note: the worker's own loop deals with Redis being away
            log.debug("model note not written yet: %s", exc)


def chain(*hooks: BetweenBatches | None) -> BetweenBatches | None:
    present = [h for h in hooks if h is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def run_all(handled: int) -> None:
        for hook in present:
            hook(handled)

    return run_all


def build_worker(
    settings: ConsumerSettings,
    kafka: KafkaSettings,
    topics: TopicSettings,
    redis_settings: RedisSettings,
    *,
    predictor: Predictor | None = None,
    replica: int | None = None,
    registry: CollectorRegistry | None = None,
    between_batches: BetweenBatches | None = None,
) -> WorkerProcess:
    """One worker from settings. ``between_batches`` runs after each loop turn, after the hot-reload check."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    # The artifact is fingerprinted before it loads, and loaded from the resolved directory: a link moved while
    # it loads is seen as a change at the first check.
    artifact = current_artifact(settings)
    if predictor is None:
        predictor = load_model(settings, artifact.directory if artifact is not None else None)
    shadow = load_model(settings, settings.shadow_model_dir) if settings.shadow_model_dir is not None else None
    analytics = AnalyticsSettings()
    store = AggregateStore.from_settings(redis_settings, analytics)

    def on_stats(stats_json: str) -> None:
        metrics.observe_stats(stats_json, topics.input)

    consumer = make_consumer(
        kafka,
        settings.group_id,
        **{
            "partition.assignment.strategy": "cooperative-sticky",
            "auto.offset.reset": settings.auto_offset_reset,
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(1000, settings.session_timeout_ms // 3),
            "max.poll.interval.ms": settings.max_poll_interval_ms,
            # Producers may write reviews transactionally too: never read aborted ones.
            "isolation.level": "read_committed",
            "statistics.interval.ms": 5000,
            # librdkafka's default lets an idle fetch sit 500 ms on the broker: most of a light-load latency.
            "fetch.wait.max.ms": 50,
            "stats_cb": on_stats,
        },
    )
    extra: dict[str, object] = {
        "transactional.id": transactional_id(settings, replica),
        "transaction.timeout.ms": settings.transaction_timeout_ms,
        # librdkafka requires deliveries to time out within the transaction.
        "delivery.timeout.ms": settings.transaction_timeout_ms,
    } if settings.transactions else {}
    def new_producer() -> Producer:
        return make_producer(kafka, ProducerSettings(linger_ms=2), **extra)

    output = KafkaOutput(new_producer, consumer, enriched_topic=topics.enriched, dlq_topic=topics.dlq,
                         alerts_topic=topics.alerts, transactional=settings.transactions,
                         shadow_topic=topics.enriched_shadow if shadow is not None else None)
    options = WorkerOptions(
        input_topic=topics.input,
        batch_max_records=settings.batch_max_records,
        batch_max_wait_s=settings.batch_max_wait_ms / 1000.0,
        batch_idle_close_s=settings.batch_idle_close_ms / 1000.0 if settings.batch_idle_close_ms else None,
        drain_timeout_s=settings.drain_timeout_s,
        stuck_after_failures=settings.stuck_after_failures,
        integrity_recheck_s=settings.integrity_recheck_s,
        adaptive=AdaptivePolicy(
            latency_target_s=settings.latency_target_ms / 1000.0, max_records=settings.batch_max_records,
            deep_max_records=max(settings.batch_max_records, settings.batch_deep_max_records),
            max_wait_s=settings.batch_max_wait_ms / 1000.0,
            # A SIGTERM finishes the batch in hand: half the drain bound for it, the rest for the commit and leaving.
            max_batch_s=settings.drain_timeout_s / 2,
        ) if settings.batch_adaptive else None,
    )
    processor = BatchProcessor(predictor, store, dead_letter_max_value_bytes=settings.dlq_max_value_bytes)
    live_quality = LiveQuality(metrics, analytics.quality_window, prediction_reference(settings.model_dir))
    note = ModelNote(store, predictor)

    def switch(new: Predictor, directory: Path) -> None:
        processor.predictor = new  # between two batches: the worker's loop is not in process()
        note.pending = new
        live_quality.reference = prediction_reference(directory)  # drift is judged against the new model's mix

    reloader = ModelReloader(
        settings.model_dir, lambda directory: load_model(settings, directory), switch, metrics.model, predictor,
        artifact, interval_s=settings.model_check_interval_s,
    )
    live: BatchProcessor | Processes = processor
    if shadow is not None:
        live = ShadowProcessor(processor, shadow, metrics.shadow, settings.shadow_share)
    worker = Worker(consumer, output, live, metrics, options,
                    topic_id_of=lambda topic: topic_id(kafka, topic),
                    prepare=lambda: prepare_redis(store, redis_settings, metrics), live_quality=live_quality,
                    between_batches=chain(reloader.between_batches, note, between_batches))

    stall_s = settings.max_poll_interval_ms / 1000.0

    def healthz() -> tuple[bool, str]:
        idle = worker.clock() - worker.heartbeat
        return idle < stall_s, f"last loop {idle:.1f}s ago"

    def readyz() -> tuple[bool, str]:
        if not worker.started:
            return False, "starting"
        # Coarse reasons: the probe is unauthenticated, and the log has the details.
        if worker.stuck_reason is not None:
            return False, "stuck: the same batch keeps failing"
        if worker.set_aside:
            return False, f"integrity: {len(worker.set_aside)} partitions set aside (see the log)"
        if worker.degraded_reason is not None:
            return False, coarse_reason(worker.degraded_reason)
        return True, f"{len(worker.assigned)} partitions assigned"

    http = None
    if settings.metrics_port or replica is not None:
        port = settings.metrics_port + (replica or 0) if settings.metrics_port else 0
        http = serve(registry, port, healthz, readyz, host=settings.metrics_host)
        log.info("metrics on :%d/metrics", http.server_port)
    return WorkerProcess(worker, http, registry, reloader)
