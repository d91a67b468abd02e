"""``reviews-mtl aggregates trend | quality`` and ``reviews-mtl alerts tail``: the questions beyond lifetime counts.

Exit codes: 0 done; 1 Redis or Kafka unavailable; 2 a bad option.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reviews_mtl.cli_args import add_kafka_args, add_redis_args
from reviews_mtl.terminal import escape_for_terminal

if TYPE_CHECKING:
    from reviews_mtl.aggregates.store import AggregateStore, ProductTrend, QualityDay


def register_analytics(sub: Any) -> None:
    trend = sub.add_parser("trend", help="one product's reviews per day: sentiment, rating, aspects")
    trend.add_argument("product_id", metavar="PRODUCT")
    trend.add_argument("--days", type=int, default=30, help="how many days up to today (default 30)")
    add_redis_args(trend)
    trend.add_argument("--json", action="store_true", help="print JSON")
    trend.set_defaults(func=_trend)

    quality = sub.add_parser("quality", help="the model's live quality per model version and day, and its drift")
    quality.add_argument("--days", type=int, default=30, help="how many days up to today (default 30)")
    quality.add_argument("--model", type=Path, help="the deployed artifact: adds the drift of the prediction mix "
                         "against its validation mix (PSI)")
    add_redis_args(quality)
    quality.add_argument("--json", action="store_true", help="print JSON")
    quality.set_defaults(func=_quality)


def register(subparsers: Any) -> None:
    """``reviews-mtl alerts``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "alerts", help="read the alerts the workers raise (topic reviews.alerts)",
        description="Alerts: a product's recent (half-life) negative share, or an aspect's recent complaint rate, "
        "jumped past its lifetime share (REVIEWS_AGG_ALERT_* settings). Read from the alerts topic "
        "(REVIEWS_TOPIC_ALERTS) with read_committed.")
    sub = parser.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    tail = sub.add_parser("tail", help="the latest alerts, then new ones as they come with --follow")
    add_kafka_args(tail)
    tail.add_argument("-n", type=int, default=20, help="how many of the latest to show first (default 20)")
    tail.add_argument("--follow", action="store_true", help="keep reading new alerts until interrupted")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.set_defaults(func=_tail)


def _store(args: argparse.Namespace) -> AggregateStore:
    from pydantic import SecretStr

    from reviews_mtl.aggregates.store import AggregateStore
    from reviews_mtl.settings import RedisSettings

    settings = RedisSettings(url=SecretStr(args.redis_url)) if args.redis_url else RedisSettings()
    return AggregateStore.from_settings(settings)


def _days_ok(args: argparse.Namespace, command: str) -> bool:
    if not 1 <= args.days <= 3660:
        print(f"reviews-mtl aggregates {command}: --days must be between 1 and 3660", file=sys.stderr)
        return False
    return True


def render_trend(trend: ProductTrend) -> str:
    rows = [d for d in trend.days if d.review_count]
    lines = [f"product {escape_for_terminal(trend.product_id)}: {sum(d.review_count for d in trend.days)} reviews "
             f"in {len(trend.days)} days ({len(rows)} with reviews)"]
    if rows:
        lines.append(f"  {'day':<17} {'reviews':>7} {'neg':>5} {'neu':>5} {'pos':>5} {'rating':>6}  complaints")
    for d in rows:
        complaints = ", ".join(f"{a} {c}" for a, c in sorted(d.complaints.items(), key=lambda x: -x[1]) if c)[:60]
        mean = f"{d.rating_mean:.2f}" if d.rating_mean is not None else "-"
        lines.append(f"  {d.day:<17} {d.review_count:>7} {d.sentiment['negative']:>5} {d.sentiment['neutral']:>5} "
                     f"{d.sentiment['positive']:>5} {mean:>6}  {complaints}")
    return "\n".join(lines)


def _trend(args: argparse.Namespace) -> int:
    import redis

    if not _days_ok(args, "trend"):
        return 2
    try:
        trend = _store(args).trend(args.product_id, days=args.days)
    except redis.RedisError as exc:
        print(f"reviews-mtl aggregates trend: Redis unavailable: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(trend.model_dump(mode="json"), indent=2))
    else:
        print(render_trend(trend))
    return 0


def with_drift(rows: list[QualityDay], model_dir: Path | None) -> list[dict[str, Any]]:
    """Quality rows as JSON objects, each with the PSI of its prediction mix when a model's reference is known."""
    from reviews_mtl.aggregates.drift import psi, rate_psi
    from reviews_mtl.model.artifact import prediction_reference

    reference = prediction_reference(model_dir) if model_dir is not None else None
    out = []
    for row in rows:
        doc = row.model_dump(mode="json")
        if reference is not None and row.predictions:
            doc["sentiment_psi"] = round(psi(reference.sentiment, row.predicted_sentiment), 4)
            doc["aspect_psi"] = round(rate_psi(reference.aspect_rates, row.aspect_rates), 4) \
                if reference.aspect_rates else None
        out.append(doc)
    return out


def _quality(args: argparse.Namespace) -> int:
    import redis

    if not _days_ok(args, "quality"):
        return 2
    try:
        rows = with_drift(_store(args).quality(days=args.days), args.model)
    except redis.RedisError as exc:
        print(f"reviews-mtl aggregates quality: Redis unavailable: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no predictions recorded in these days")
        return 0

    def pct(value: float | None) -> str:
        return f"{value:.1%}" if value is not None else "-"

    print(f"{'model version':<28} {'day':<10} {'predictions':>11} {'with stars':>10} {'MAE':>6} {'5-class':>7} "
          f"{'agree':>6} {'PSI':>6}")
    for r in rows:
        mae = f"{r['rating_mae']:.3f}" if r["rating_mae"] is not None else "-"
        drift = f"{r['sentiment_psi']:.3f}" if r.get("sentiment_psi") is not None else "-"
        print(f"{escape_for_terminal(r['model_version'])[:28]:<28} {r['day']:<10} {r['predictions']:>11} "
              f"{r['n']:>10} {mae:>6} {pct(r['star5_accuracy']):>7} {pct(r['sentiment_agreement']):>6} {drift:>6}")
    return 0


def render_alert(alert: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(float(alert.get("at", 0))))
    what = alert.get("kind", "?")
    ids = ", ".join(escape_for_terminal(str(i)) for i in (alert.get("review_ids") or [])[:5])
    return (f"{when}  {escape_for_terminal(str(alert.get('product_id')))}  {what}: "
            f"{float(alert.get('from', 0)):.0%} → {float(alert.get('to', 0)):.0%} over "
            f"{float(alert.get('recent_reviews', 0)):.1f} recent reviews (half-life "
            f"{float(alert.get('half_life_s', 0)) / 86_400:g} d); e.g. {ids}")


def _tail(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from reviews_mtl.kafka import KafkaSetupError, read_topic
    from reviews_mtl.kafka.reading import follow_topic
    from reviews_mtl.settings import KafkaSettings, TopicSettings

    if args.n < 0:
        print("reviews-mtl alerts tail: -n must be >= 0", file=sys.stderr)
        return 2
    kafka = KafkaSettings(**({"bootstrap_servers": args.bootstrap_servers} if args.bootstrap_servers else {}))
    topic = TopicSettings().alerts

    def show(value: bytes | None) -> None:
        try:
            alert = json.loads(value or b"{}")
        except ValueError:
            return
        print(json.dumps(alert) if args.json else render_alert(alert), flush=True)

    try:
        messages = read_topic(kafka, topic, timeout_s=30, idle_s=2)
        messages.sort(key=lambda m: (m.timestamp()[1], m.partition() or 0, m.offset() or 0))
        for message in messages[-args.n:] if args.n else []:
            show(message.value())
        if args.follow:
            for message in follow_topic(kafka, topic):
                show(message.value())
    except (KafkaException, KafkaSetupError) as exc:
        print(f"reviews-mtl alerts tail: {exc}", file=sys.stderr)
        return 1
    return 0
