"""The worker's Prometheus metrics, as one typed bundle built against an injected registry."""

from __future__ import annotations

import json
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds: inference of one micro-batch runs from a few ms (GPU) to ~2 s (a full batch on 2 CPU cores).
_INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
# |live rating - shadow rating| in stars (0-4), and the aspect sets' Jaccard index (0-1), per review.
_RATING_DELTA_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
_JACCARD_BUCKETS = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class ModelMetrics:
    """The live model: which one serves (``model_info`` is 1 for it), and its hot reloads."""

    info: Gauge
    reloads: Counter
    reload_failures: Counter
    load_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry, namespace: str = "reviews_mtl") -> ModelMetrics:
        return cls(
            info=Gauge("model_info", "1 for the model this worker predicts with", ("name", "version", "runtime"),
                       namespace=namespace, registry=registry),
            reloads=Counter("model_reloads", "New artifacts switched to between batches",
                            namespace=namespace, registry=registry),
            reload_failures=Counter("model_reload_failures", "New artifacts refused (the old model kept serving)",
                                    namespace=namespace, registry=registry),
            load_seconds=Histogram("model_load_seconds", "Loading, warming and checking a new artifact",
                                   namespace=namespace, registry=registry, buckets=_LOAD_BUCKETS),
        )

    def serving(self, name: str, version: str, runtime: str) -> None:
        """Mark the model now serving (and only it)."""
        self.info.clear()
        self.info.labels(name, version, runtime).set(1)


@dataclass(frozen=True)
class ShadowMetrics:
    """A shadow model beside the live one: how often it agrees, and what it costs. Means are ``_sum / _count``."""

    info: Gauge
    reviews: Counter
    sentiment_agreements: Counter
    rating_abs_delta: Histogram
    aspect_jaccard: Histogram
    seconds: Histogram
    errors: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, namespace: str = "reviews_mtl") -> ShadowMetrics:
        return cls(
            info=Gauge("shadow_model_info", "1 for the shadow model", ("name", "version", "runtime"),
                       namespace=namespace, registry=registry),
            reviews=Counter("shadow_reviews", "Reviews the shadow model predicted", namespace=namespace,
                            registry=registry),
            sentiment_agreements=Counter("shadow_sentiment_agreements",
                                         "Reviews whose shadow sentiment label equals the live one",
                                         namespace=namespace, registry=registry),
            rating_abs_delta=Histogram("shadow_rating_abs_delta", "|live rating - shadow rating| per review (stars)",
                                       namespace=namespace, registry=registry, buckets=_RATING_DELTA_BUCKETS),
            aspect_jaccard=Histogram("shadow_aspect_jaccard",
                                     "Jaccard index of the live and shadow detected aspects per review (1 when both "
                                     "are empty)", namespace=namespace, registry=registry, buckets=_JACCARD_BUCKETS),
            seconds=Histogram("shadow_seconds", "The shadow's cost per batch: decode, predict, compare, build records",
                              namespace=namespace, registry=registry, buckets=_INFERENCE_BUCKETS),
            errors=Counter("shadow_errors", "Batches the shadow failed on (the live path went on without it)",
                           namespace=namespace, registry=registry),
        )


@dataclass(frozen=True)
class WorkerMetrics:
    consumed: Counter
    enriched: Counter
    dead_letters: Counter
    replayed: Counter
    batches: Counter
    batch_size: Histogram
    inference_seconds: Histogram
    batch_seconds: Histogram
    end_to_end_seconds: Histogram
    lag: Gauge
    assigned_partitions: Gauge
    redis_errors: Counter
    commit_errors: Counter
    aborted_transactions: Counter
    producer_resets: Counter
    stuck_batch: Gauge
    resends: Counter
    edits: Counter
    deletes: Counter
    integrity_violations: Gauge
    below_watermark: Counter
    redis_durability_problems: Gauge
    live_rating_mae: Gauge
    live_star5_accuracy: Gauge
    live_sentiment_agreement: Gauge
    prediction_drift_psi: Gauge
    alerts: Counter
    model: ModelMetrics
    shadow: ShadowMetrics

    @classmethod
    def create(cls, registry: CollectorRegistry, namespace: str = "reviews_mtl") -> WorkerMetrics:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=namespace, registry=registry)

        return cls(
            consumed=counter("consumed_messages", "Messages consumed from the input topic"),
            enriched=counter("enriched_reviews", "Enriched records committed to the output topic"),
            dead_letters=counter("dead_letters", "Messages sent to the dead-letter topic", ("reason",)),
            replayed=counter("replayed_reviews", "Reviews re-published from Redis after a replay"),
            batches=counter("batches", "Micro-batches committed"),
            batch_size=Histogram("batch_size_messages", "Messages per micro-batch", namespace=namespace,
                                 registry=registry, buckets=_BATCH_BUCKETS),
            inference_seconds=Histogram("inference_seconds", "Tokenize + model time per micro-batch",
                                        namespace=namespace, registry=registry, buckets=_INFERENCE_BUCKETS),
            batch_seconds=Histogram("batch_seconds", "Wall time to process and commit one micro-batch",
                                    namespace=namespace, registry=registry, buckets=_INFERENCE_BUCKETS),
            end_to_end_seconds=Histogram(
                "end_to_end_latency_seconds", "From the review's timestamp to its enriched record committed",
                namespace=namespace, registry=registry, buckets=_LATENCY_BUCKETS),
            lag=Gauge("consumer_lag_messages", "Messages behind the end of the partition",
                      ("topic", "partition"), namespace=namespace, registry=registry),
            assigned_partitions=Gauge("assigned_partitions", "Input partitions assigned to this worker",
                                      namespace=namespace, registry=registry),
            redis_errors=counter("redis_errors", "Failed Redis aggregate updates (retried)"),
            commit_errors=counter("commit_errors", "Failed Kafka commits or transactions (retried)"),
            aborted_transactions=counter("aborted_transactions", "Kafka transactions aborted and replayed"),
            producer_resets=counter("producer_resets", "Producers replaced after a fatal error"),
            stuck_batch=Gauge("stuck_batch", "1 while the same batch has failed to publish many times in a row",
                              namespace=namespace, registry=registry),
            resends=counter("resent_reviews", "Reviews neither new nor newer than the one counted (not counted)"),
            edits=counter("edited_reviews", "Reviews that replaced an older version of themselves"),
            deletes=counter("deleted_reviews", "Retractions applied"),
            integrity_violations=Gauge(
                "integrity_violation", "1 while a partition is set aside because its aggregates cannot be trusted",
                ("topic", "partition", "reason"), namespace=namespace, registry=registry),
            below_watermark=counter("below_watermark_messages",
                                    "Messages older than Redis's last applied batch, skipped", ("topic", "partition")),
            redis_durability_problems=Gauge(
                "redis_durability_problems", "Ways Redis can lose acknowledged batches, found at start (see the log)",
                namespace=namespace, registry=registry),
            live_rating_mae=Gauge("live_rating_mae", "Mean |predicted − true stars| over the last reviews with stars",
                                  ("model_version",), namespace=namespace, registry=registry),
            live_star5_accuracy=Gauge("live_star5_accuracy", "Share of rounded predicted ratings equal to the stars",
                                      ("model_version",), namespace=namespace, registry=registry),
            live_sentiment_agreement=Gauge(
                "live_sentiment_agreement", "Share of predicted sentiments agreeing with the stars (1-2, 3, 4-5)",
                ("model_version",), namespace=namespace, registry=registry),
            prediction_drift_psi=Gauge(
                "prediction_drift_psi", "Population stability index of the recent prediction mix against validation",
                ("model_version", "what"), namespace=namespace, registry=registry),
            alerts=counter("alerts", "Alerts raised (a product's recent negative share or complaints jumped)",
                           ("kind",)),
            model=ModelMetrics.create(registry, namespace),
            shadow=ShadowMetrics.create(registry, namespace),
        )

    def observe_stats(self, stats_json: str, topic: str) -> None:
        """Update lag gauges from librdkafka's statistics callback (JSON document)."""
        stats = json.loads(stats_json)
        partitions = stats.get("topics", {}).get(topic, {}).get("partitions", {})
        for pid, p in partitions.items():
            if pid == "-1":
                continue
            lag = p.get("consumer_lag", -1)
            if lag >= 0:
                self.lag.labels(topic, pid).set(lag)
