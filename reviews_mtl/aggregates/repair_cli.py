"""``reviews-mtl aggregates rebuild`` and ``reset-topic``: an operator's repairs (``reviews_mtl.aggregates.rebuild``).

Exit codes: 0 done; 1 Redis or Kafka unavailable, or the rebuild could not finish; 2 a bad option.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reviews_mtl.cli_args import add_kafka_args, add_redis_args


def register_repair(sub: Any) -> None:
    rebuild = sub.add_parser(
        "rebuild", help="recompute the aggregates and watermarks from the enriched and dead-letter topics",
        description="Recompute every aggregate and watermark of the key prefix from what Kafka committed (the "
        "enriched topic read_committed, the dead-letter topic, the consumer group's offsets). Running workers "
        "set their partitions aside meanwhile and take them back when it ends. Topics: REVIEWS_TOPIC_*.")
    add_kafka_args(rebuild)
    add_redis_args(rebuild)
    rebuild.add_argument("--group-id", default=None,
                         help="the workers' consumer group (env REVIEWS_CONSUMER_GROUP_ID, default reviews-mtl)")
    rebuild.add_argument("--settle-s", type=float, default=5.0,
                         help="wait this long after taking the lock, for a batch in flight to commit (default 5)")
    rebuild.add_argument("--force", action="store_true", help="take the lock even if another rebuild holds it")
    rebuild.add_argument("--json", action="store_true", help="print the report as JSON")
    rebuild.set_defaults(func=_rebuild)

    reset = sub.add_parser(
        "reset-topic", help="forget an input topic's watermarks after it was recreated (counts are kept)",
        description="Forget the watermarks, last-batch copies and topic id of one input topic, so workers read a "
        "recreated topic from its start. The counts stay: reviews of the old topic remain counted.")
    reset.add_argument("topic", metavar="TOPIC")
    add_redis_args(reset)
    reset.set_defaults(func=_reset_topic)


def _settings(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    from pydantic import SecretStr

    from reviews_mtl.settings import ConsumerSettings, KafkaSettings, RedisSettings, TopicSettings

    redis = RedisSettings(url=SecretStr(args.redis_url)) if args.redis_url else RedisSettings()
    kafka = KafkaSettings(**({"bootstrap_servers": args.bootstrap_servers} if args.bootstrap_servers else {}))
    return redis, kafka, TopicSettings(), args.group_id or ConsumerSettings().group_id


def _rebuild(args: argparse.Namespace) -> int:
    import redis
    from confluent_kafka import KafkaException
    from tqdm import tqdm

    from reviews_mtl.aggregates.rebuild import RebuildError, rebuild
    from reviews_mtl.aggregates.store import AggregateStore
    from reviews_mtl.kafka import KafkaSetupError

    if args.settle_s < 0:
        print("reviews-mtl aggregates rebuild: --settle-s must be >= 0", file=sys.stderr)
        return 2
    redis_settings, kafka, topics, group = _settings(args)
    store = AggregateStore.from_settings(redis_settings)
    with tqdm(desc="enriched records read", unit=" records", disable=args.json or not sys.stderr.isatty()) as bar:
        try:
            report = rebuild(store, kafka, group=group, input_topic=topics.input, enriched_topic=topics.enriched,
                             dlq_topic=topics.dlq, alerts_topic=topics.alerts, settle_s=args.settle_s,
                             force=args.force,
                             progress=lambda n: bar.update(n - bar.n))
        except (RebuildError, redis.RedisError, KafkaException, KafkaSetupError) as exc:
            print(f"reviews-mtl aggregates rebuild: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"rebuilt prefix {redis_settings.key_prefix!r} from {topics.enriched} and {topics.dlq} in "
              f"{report.elapsed_s:.1f}s: {report.enriched} enriched records, {report.retractions} retractions, "
              f"{report.dead_letters} dead letters; watermarks at group {group}'s committed offsets - 1 for "
              f"{len(report.watermarks)} partitions")
    return 0


def _reset_topic(args: argparse.Namespace) -> int:
    import redis
    from pydantic import SecretStr

    from reviews_mtl.aggregates.rebuild import reset_topic
    from reviews_mtl.aggregates.store import AggregateStore
    from reviews_mtl.settings import RedisSettings

    settings = RedisSettings(url=SecretStr(args.redis_url)) if args.redis_url else RedisSettings()
    try:
        done = reset_topic(AggregateStore.from_settings(settings), args.topic)
    except redis.RedisError as exc:
        print(f"reviews-mtl aggregates reset-topic: Redis unavailable: {exc}", file=sys.stderr)
        return 1
    print(f"forgot {done['watermarks']} watermarks and {done['copies']} last-batch copies of {args.topic!r}; "
          "workers take its partitions back within seconds and read them from the start")
    return 0
