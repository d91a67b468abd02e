"""``reviews-mtl backfill``: re-score the input topic with another model into a new key prefix (``consumer.backfill``).

Exit codes: 0 caught up (or stopped by a signal); 1 Kafka or Redis failed; 2 bad options or model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, get_args

from reviews_mtl.cli_args import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_kafka_args, add_redis_args, port_number
from reviews_mtl.settings import BackfillSettings, RuntimeKind

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    defaults = BackfillSettings()
    p: argparse.ArgumentParser = sub.add_parser(
        "backfill", help="re-score the input topic with another model into a new Redis key prefix",
        description="Read the input topic from the beginning (or --since a time) in a consumer group of its own, "
        "predict with --model and write aggregates under --key-prefix with the worker's exactly-once machinery, "
        "beside the live workers (bounded by --rate). Then `reviews-mtl aggregates promote NEW` switches the "
        "readers. Options are also REVIEWS_BACKFILL_* variables; batching and threads are REVIEWS_CONSUMER_*.",
    )
    add_kafka_args(p)
    add_redis_args(p)
    p.add_argument("--model", default=defaults.model_dir, help="the new model's artifact directory "
                   "(env REVIEWS_BACKFILL_MODEL_DIR)")
    p.add_argument("--key-prefix", default=defaults.key_prefix, metavar="NEW",
                   help="the Redis key prefix to write (env REVIEWS_BACKFILL_KEY_PREFIX)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true",
                       help="start at the beginning of every partition (the default)")
    start.add_argument("--since", default=defaults.since, metavar="TIME",
                       help="start at the first review at or after TIME: 2h, 7d, an ISO-8601 time with a timezone, "
                       "or epoch seconds (offsets-for-times; env REVIEWS_BACKFILL_SINCE)")
    p.add_argument("--rate", type=float, default=defaults.rate,
                   help="reviews per second at most, to leave the live workers their share (env REVIEWS_BACKFILL_RATE)")
    p.add_argument("--follow", action="store_true", default=defaults.follow,
                   help="keep following the topic once caught up: the live writer of NEW (env REVIEWS_BACKFILL_FOLLOW)")
    p.add_argument("--group-id", default=defaults.group_id,
                   help="consumer group (default {REVIEWS_CONSUMER_GROUP_ID}.backfill.NEW)")
    p.add_argument("--enriched-topic", default=defaults.enriched_topic,
                   help="where the re-scored records go (default {REVIEWS_TOPIC_ENRICHED}.NEW)")
    p.add_argument("--dlq-topic", default=defaults.dlq_topic,
                   help="where its dead letters go (default {REVIEWS_TOPIC_DLQ}.NEW)")
    p.add_argument("--input-topic", help="env REVIEWS_TOPIC_INPUT (default reviews)")
    p.add_argument("--runtime", choices=get_args(RuntimeKind), help="model runtime (env REVIEWS_CONSUMER_RUNTIME)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (env REVIEWS_CONSUMER_INTRA_OP_THREADS)")
    p.add_argument("--batch-max-records", type=int, help="env REVIEWS_CONSUMER_BATCH_MAX_RECORDS (default 256)")
    p.add_argument("--metrics-port", type=port_number, default=0,
                   help="Prometheus/health port of the backfill worker (default 0: off)")
    p.add_argument("--progress-interval-s", type=float, default=defaults.progress_interval_s,
                   help="seconds between progress lines (env REVIEWS_BACKFILL_PROGRESS_INTERVAL_S)")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import redis
    from confluent_kafka import KafkaException
    from pydantic import SecretStr

    from consumer.backfill import BackfillError, Progress, RateBound, commit_start_offsets, plan
    from consumer.cli import run_one
    from reviews_mtl.aggregates.prefixes import PrefixError
    from reviews_mtl.aggregates.store import AggregateStore
    from reviews_mtl.dlq.selection import parse_since
    from reviews_mtl.kafka import DLQ_PARTITIONS, KafkaSetupError, create_topic
    from reviews_mtl.kafka.reading import throwaway_reader, topic_partitions
    from reviews_mtl.settings import ConsumerSettings, KafkaSettings, RedisSettings, TopicSettings

    try:
        since_ms = parse_since(args.since) if args.since else None
        settings = BackfillSettings(model_dir=args.model, key_prefix=args.key_prefix, since=args.since,
                                    rate=args.rate, follow=args.follow, group_id=args.group_id,
                                    enriched_topic=args.enriched_topic, dlq_topic=args.dlq_topic,
                                    progress_interval_s=args.progress_interval_s)
        base = ConsumerSettings()
        topics = TopicSettings(**({"input": args.input_topic} if args.input_topic else {}))
        the_plan = plan(settings, base, topics, since_ms)
    except (BackfillError, PrefixError, ValueError) as exc:
        print(f"reviews-mtl backfill: {exc}", file=sys.stderr)
        return EXIT_USAGE
    kafka = KafkaSettings(**({"bootstrap_servers": args.bootstrap_servers} if args.bootstrap_servers else {}))
    redis_settings = RedisSettings(url=SecretStr(args.redis_url)) if args.redis_url else RedisSettings()
    redis_settings = redis_settings.model_copy(update={"key_prefix": the_plan.prefix})
    overrides: dict[str, Any] = {"model_dir": the_plan.model_dir, "group_id": the_plan.group_id,
                                 "metrics_port": args.metrics_port, "shadow_model_dir": None,
                                 # Never reset to the end: a backfill must see every record from its start.
                                 "auto_offset_reset": "earliest"}
    for flag, field in (("runtime", "runtime"), ("threads", "intra_op_threads"),
                        ("batch_max_records", "batch_max_records")):
        if getattr(args, flag) is not None:
            overrides[field] = getattr(args, flag)
    consumer = base.model_copy(update=overrides)
    topics = topics.model_copy(update={"enriched": the_plan.enriched_topic, "dlq": the_plan.dlq_topic,
                                       "alerts": the_plan.alerts_topic})

    try:
        reader = throwaway_reader(kafka, "read_committed")
        try:
            partitions = len(topic_partitions(reader, the_plan.input_topic, 30.0))
        finally:
            reader.close()
        create_topic(kafka, the_plan.enriched_topic, partitions, topics.replication_factor)
        create_topic(kafka, the_plan.dlq_topic, DLQ_PARTITIONS, topics.replication_factor)
        create_topic(kafka, the_plan.alerts_topic, partitions, topics.replication_factor)
        start = commit_start_offsets(kafka, the_plan.group_id, the_plan.input_topic, the_plan.since_ms,
                                     AggregateStore.from_settings(redis_settings))
    except PrefixError as exc:
        print(f"reviews-mtl backfill: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KafkaSetupError, KafkaException, redis.RedisError) as exc:
        print(f"reviews-mtl backfill: cannot start on {the_plan.input_topic}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    where = "resuming its committed offsets" if start.resumed else (
        "from the beginning" if since_ms is None else f"from {args.since}")
    log.info("backfill into prefix %s with %s: group %s, %s, %d records to the end; enriched -> %s, dlq -> %s",
             the_plan.prefix, the_plan.model_dir, the_plan.group_id, where, start.total, the_plan.enriched_topic,
             the_plan.dlq_topic)

    progress = Progress(the_plan, start, settings.progress_interval_s)
    hooks: list[Any] = [progress]
    if the_plan.rate is not None:
        hooks.insert(0, RateBound(the_plan.rate, stopping=lambda: progress.worker is not None
                                  and progress.worker.stopping))

    def between_batches(handled: int) -> None:
        for hook in hooks:
            hook(handled)

    code = run_one(consumer, kafka, redis_settings, topics, None, between_batches=between_batches,
                   on_built=lambda process: progress.attach(process.worker))
    progress.close()
    if code != 0:
        return code
    store = AggregateStore.from_settings(redis_settings)
    totals = store.totals()
    summary = {
        "prefix": the_plan.prefix, "group_id": the_plan.group_id, "caught_up": progress.caught_up,
        "records": progress.handled, "to_the_end": start.total, "seconds": round(progress.clock() - progress.began, 1),
        # From the first batch on (the model loaded, the group joined): what --rate bounds.
        "seconds_from_first_batch": round((progress.done_at or progress.clock()) - progress.first_batch_at, 2)
        if progress.first_batch_at is not None else None,
        "reviews": totals.get("reviews", 0), "dead_letters": totals.get("dead_letters", 0),
        "enriched_topic": the_plan.enriched_topic, "dlq_topic": the_plan.dlq_topic,
        "alerts_topic": the_plan.alerts_topic,
    }
    if args.json:
        print(json.dumps(summary))
    elif progress.caught_up:
        print(f"backfill {the_plan.prefix}: caught up, {summary['records']:,} records in {summary['seconds']}s; "
              f"prefix {the_plan.prefix} holds {summary['reviews']:,} reviews. "
              f"Promote it with `reviews-mtl aggregates promote {the_plan.prefix}`")
    else:
        print(f"backfill {the_plan.prefix}: stopped at {summary['records']:,} of {start.total:,} records; "
              "run the same command again to resume")
    return EXIT_OK
