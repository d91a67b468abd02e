"""``reviews-mtl consume`` (also ``python -m consumer``): run the worker, or N of them with ``--replicas``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any, get_args

from reviews_mtl.cli_args import port_number

log = logging.getLogger(__name__)

# CLI flag → (settings class key, field). Flags left out fall back to the environment, then defaults.
_CONSUMER_FLAGS = {
    "model": "model_dir",
    "runtime": "runtime",
    "group_id": "group_id",
    "batch_max_records": "batch_max_records",
    "batch_max_wait_ms": "batch_max_wait_ms",
    "metrics_port": "metrics_port",
    "replicas": "replicas",
    "threads": "intra_op_threads",
    "drain_timeout_s": "drain_timeout_s",
    "inference_batch_size": "inference_batch_size",
    "model_check_interval_s": "model_check_interval_s",
    "shadow_model": "shadow_model_dir",
    "shadow_share": "shadow_share",
}


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "consume", help="run the streaming worker (consumer group)",
        description="Consume reviews in micro-batches, enrich them with the model, publish to the enriched "
        "topic and update Redis aggregates, effectively once. Every option is also an environment variable "
        "(REVIEWS_CONSUMER_*, KAFKA_*, REDIS_*, REVIEWS_TOPIC_*).",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from reviews_mtl.cli_args import add_kafka_args, add_redis_args
    from reviews_mtl.settings import RuntimeKind

    add_kafka_args(p)
    add_redis_args(p)
    p.add_argument("--model", help="model artifact directory, or a link to one (models/current -> models/v7): "
                   "a new artifact there is loaded and switched to between two batches, no restart "
                   "(env REVIEWS_CONSUMER_MODEL_DIR)")
    p.add_argument("--model-check-interval-s", type=float,
                   help="look for a new artifact at --model at most this often, 0 = only on SIGHUP "
                   "(env REVIEWS_CONSUMER_MODEL_CHECK_INTERVAL_S, default 10)")
    p.add_argument("--shadow-model", help="a candidate artifact run on the same batches; its predictions go to the "
                   "shadow topic (REVIEWS_TOPIC_ENRICHED_SHADOW), never to the aggregates "
                   "(env REVIEWS_CONSUMER_SHADOW_MODEL_DIR)")
    p.add_argument("--shadow-share", type=float,
                   help="share of the batches the shadow model sees, in (0, 1] (env REVIEWS_CONSUMER_SHADOW_SHARE)")
    p.add_argument("--runtime", choices=get_args(RuntimeKind),
                   help="model runtime (env REVIEWS_CONSUMER_RUNTIME; default auto: torch on CUDA, else int8)")
    p.add_argument("--replicas", type=int, help="worker processes in this group (env REVIEWS_CONSUMER_REPLICAS)")
    p.add_argument("--group-id", help="consumer group (env REVIEWS_CONSUMER_GROUP_ID, default reviews-mtl)")
    p.add_argument("--batch-max-records", type=int, help="env REVIEWS_CONSUMER_BATCH_MAX_RECORDS (default 256)")
    p.add_argument("--batch-max-wait-ms", type=int, help="env REVIEWS_CONSUMER_BATCH_MAX_WAIT_MS (default 50)")
    p.add_argument("--metrics-port", type=port_number,
                   help="Prometheus/health port, replica i uses port+i, 0 = off (env REVIEWS_CONSUMER_METRICS_PORT)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads per worker, 0 = cores/replicas")
    p.add_argument("--drain-timeout-s", type=float, help="bound on the SIGTERM drain (default 20)")
    p.add_argument("--inference-batch-size", type=int,
                   help="rows per model call, 0 = the whole micro-batch (GPU)")
    p.add_argument("--no-transactions", action="store_true",
                   help="at-least-once output instead of one transaction per batch (REVIEWS_CONSUMER_TRANSACTIONS)")
    p.add_argument("--input-topic", help="env REVIEWS_TOPIC_INPUT (default reviews)")
    p.add_argument("--replica-index", type=int, help=argparse.SUPPRESS)


def _settings(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    from reviews_mtl.settings import ConsumerSettings, KafkaSettings, RedisSettings, TopicSettings

    overrides: dict[str, Any] = {
        field: getattr(args, flag) for flag, field in _CONSUMER_FLAGS.items() if getattr(args, flag) is not None
    }
    if args.no_transactions:
        overrides["transactions"] = False
    consumer = ConsumerSettings(**overrides)
    kafka = KafkaSettings(**({"bootstrap_servers": args.bootstrap_servers} if args.bootstrap_servers else {}))
    redis = RedisSettings(**({"url": args.redis_url} if args.redis_url else {}))
    topics = TopicSettings(**({"input": args.input_topic} if args.input_topic else {}))
    return consumer, kafka, redis, topics


def run(args: argparse.Namespace) -> int:
    consumer, kafka, redis, topics = _settings(args)
    if consumer.replicas > 1 and args.replica_index is None:
        from consumer.supervisor import Supervisor

        return Supervisor(child_arguments(args), consumer.replicas, consumer.drain_timeout_s,
                          child_environment(args), instance_id=consumer.instance_id).run()
    if consumer.intra_op_threads == 0 and consumer.replicas > 1:
        threads = max(1, (os.cpu_count() or 1) // consumer.replicas)
        consumer = consumer.model_copy(update={"intra_op_threads": threads})
    return run_one(consumer, kafka, redis, topics, args.replica_index)


def child_arguments(args: argparse.Namespace) -> list[str]:
    """The flags given to this command, for ``python -m consumer`` replicas (which also inherit env)."""
    argv: list[str] = []
    for name in ("bootstrap_servers", "input_topic", *_CONSUMER_FLAGS):
        value = getattr(args, name)
        if value is not None and name != "replicas":
            argv += [f"--{name.replace('_', '-')}", str(value)]
    if args.no_transactions:
        argv.append("--no-transactions")
    # Each child is one replica of the group; threads are split between them unless set.
    replicas = args.replicas or 1
    if args.threads is None:
        argv += ["--threads", str(max(1, (os.cpu_count() or 1) // max(1, replicas)))]
    return argv


def child_environment(args: argparse.Namespace) -> dict[str, str]:
    """What replicas get through the environment rather than argv (visible to every local user in ``ps``)."""
    return {"REDIS_URL": args.redis_url} if args.redis_url else {}


def run_one(consumer: Any, kafka: Any, redis: Any, topics: Any, replica: int | None,
            between_batches: Callable[[int], None] | None = None,
            on_built: Callable[[Any], None] | None = None) -> int:
    """Build one worker and run it until a signal; ``between_batches`` and ``on_built`` serve ``backfill``."""
    from consumer.app import WorkerProcess, build_worker

    built: list[WorkerProcess] = []
    stop_requested = threading.Event()

    def on_signal(signum: int) -> None:
        if stop_requested.is_set():
            return
        stop_requested.set()
        log.info("signal %d: draining (at most %.0fs)", signum, consumer.drain_timeout_s)
        if built:
            built[0].worker.request_stop()
        # The bound on the drain: past it, exit without committing; the batch is replayed elsewhere.
        timer = threading.Timer(consumer.drain_timeout_s, lambda: os._exit(3))
        timer.daemon = True
        timer.start()

    def on_hangup() -> None:
        if built and built[0].reloader is not None:
            built[0].reloader.request_check()

    # Signals are acted on by a thread of their own, not by a handler of the main thread: that one may sit for
    # seconds inside a librdkafka call, and the drain bound counts from the signal. The C-level handler writes the
    # signal number to a pipe whatever thread receives it (set_wakeup_fd); the watcher reads it at once. Before the
    # model loads: a replica scaled down while starting must still exit cleanly, and a SIGHUP (look for a new model
    # now) must not end it.
    readable, writable = os.pipe()
    os.set_blocking(writable, False)
    signal.set_wakeup_fd(writable)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda s, f: None)  # the Python-level handler has nothing left to do

    def wait_for_signals() -> None:
        while True:
            for signum in os.read(readable, 16):
                if signum == signal.SIGHUP:
                    on_hangup()
                elif signum in (signal.SIGTERM, signal.SIGINT):
                    on_signal(signum)

    threading.Thread(target=wait_for_signals, name="signals", daemon=True).start()
    from confluent_kafka import KafkaException

    from consumer.app import RedisNotDurable
    from consumer.output import OutputError
    from reviews_mtl.kafka import KafkaSetupError, create_topic
    from reviews_mtl.model.artifact import ArtifactError

    try:
        process = build_worker(consumer, kafka, topics, redis, replica=replica, between_batches=between_batches)
    except ArtifactError as exc:
        log.error("cannot load the model: %s (train one with `reviews-mtl train`, or pass --model DIR)", exc)
        return 2
    built.append(process)
    if on_built is not None:
        on_built(process)
    if consumer.shadow_model_dir is not None:
        try:  # a transaction producing to a missing topic would abort every batch
            create_topic(kafka, topics.enriched_shadow, topics.partitions, topics.replication_factor)
        except KafkaSetupError as exc:
            log.error("cannot create the shadow topic %s: %s", topics.enriched_shadow, exc)
            return 1
    if stop_requested.is_set():
        process.worker.request_stop()
    try:
        process.worker.run()
    except RedisNotDurable as exc:
        log.error("Redis can lose what it acknowledges and REDIS_DURABILITY=require: %s", exc)
        return 2
    except (KafkaException, OutputError) as exc:
        # Fatal for this process (e.g. fenced by a newer instance): exit non-zero so it is restarted.
        log.error("Kafka failed: %s (bootstrap servers %s)", exc, kafka.bootstrap_servers)
        return 1
    if process.http is not None:
        process.http.shutdown()
    if not process.worker.closed_cleanly:
        # librdkafka would block the interpreter's exit on the clients the broker never answered: the batch in
        # hand was given up and nothing is left to flush, so leave now, with a clean status.
        logging.shutdown()
        os._exit(0)
    return 0
