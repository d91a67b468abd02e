"""``reviews-mtl dlq list|show|redrive``: inspect the dead-letter topic and re-drive selected originals.

The DLQ is read with read_committed from ``--dlq`` (default ``REVIEWS_TOPIC_DLQ``, ``reviews.dlq``); a re-drive
publishes to ``--to`` (default ``REVIEWS_TOPIC_INPUT``, ``reviews``) and records each original's source
coordinates in Redis (``{REDIS_KEY_PREFIX}:dlq:redriven``), so it goes at most once. Exit codes: 0 done;
1 the broker or Redis unavailable, or a delivery failed; 2 a bad option.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from reviews_mtl.cli_args import EXIT_FAILED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from reviews_mtl.dlq.ledger import RedriveLedger
    from reviews_mtl.dlq.selection import Selection
    from reviews_mtl.settings import KafkaSettings


class _CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def register(subparsers: Any) -> None:
    from reviews_mtl.cli_args import add_kafka_args, add_redis_args

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dlq", help="inspect the dead-letter topic and re-drive dead letters after a fix",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    helps = {
        "list": "counts by reason, with a few samples of each",
        "show": "the selected dead letters: coordinates, reason, detail and value (control characters escaped)",
        "redrive": "re-publish the selected originals to the input topic, each at most once",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--reason", action="append", default=[],
                       help="only this reason (repeat or comma-separate for several), e.g. internal_error")
        p.add_argument("--since", help="only dead letters written at or after: 30m, 2h, 7d ago, an ISO-8601 time "
                       "with a timezone, or epoch seconds")
        p.add_argument("--limit", type=int, default=20 if name == "show" else None,
                       help="at most this many, oldest first" + (" (default 20)" if name == "show" else ""))
        p.add_argument("--dlq", help="dead-letter topic (env REVIEWS_TOPIC_DLQ, default reviews.dlq)")
        add_kafka_args(p)
        add_redis_args(p)
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=_run)
    sub.choices["list"].add_argument("--samples", type=int, default=3, help="samples per reason (default 3)")
    sub.choices["show"].add_argument("--max-bytes", type=int, default=600,
                                     help="bytes of each value shown (default 600)")
    redrive = sub.choices["redrive"]
    redrive.add_argument("--to", help="topic to re-publish to (env REVIEWS_TOPIC_INPUT, default reviews)")
    redrive.add_argument("--dry-run", action="store_true", help="say what would be re-driven; send nothing")


def _run(args: argparse.Namespace) -> int:
    if not args.verbose:
        # librdkafka logs every refused connection; the one line below says what failed.
        logging.getLogger("reviews_mtl.kafka.librdkafka").setLevel(logging.CRITICAL)
    try:
        return {"list": _list, "show": _show, "redrive": _redrive}[args.dlq_command](args)
    except _CliError as exc:
        print(f"reviews-mtl dlq {args.dlq_command}: {exc}", file=sys.stderr)
        return exc.code


def _selection(args: argparse.Namespace) -> Selection:
    from reviews_mtl.dlq.selection import Selection, parse_since

    try:
        since_ms = parse_since(args.since) if args.since else None
        reasons = frozenset(r.strip() for arg in args.reason for r in arg.split(",") if r.strip())
        return Selection(reasons=reasons, since_ms=since_ms, limit=args.limit)
    except ValueError as exc:
        raise _CliError(str(exc), EXIT_USAGE) from exc


def _kafka(args: argparse.Namespace) -> KafkaSettings:
    from pydantic import ValidationError

    from reviews_mtl.kafka import KafkaSetupError, wait_for_broker
    from reviews_mtl.settings import KafkaSettings

    try:
        kafka = KafkaSettings(bootstrap_servers=args.bootstrap_servers) if args.bootstrap_servers else KafkaSettings()
        wait_for_broker(kafka, timeout_s=10.0)
    except ValidationError as exc:
        raise _CliError(f"invalid Kafka setting: {exc.errors()[0]['msg']}", EXIT_USAGE) from exc
    except KafkaSetupError as exc:
        raise _CliError(str(exc)) from exc
    return kafka


def _ledger(args: argparse.Namespace) -> RedriveLedger:
    from pydantic import SecretStr

    from reviews_mtl.aggregates.store import connect
    from reviews_mtl.dlq.ledger import RedriveLedger
    from reviews_mtl.settings import RedisSettings

    settings = RedisSettings(url=SecretStr(args.redis_url)) if args.redis_url else RedisSettings()
    return RedriveLedger(connect(settings), settings.key_prefix)


def _dlq_topic(args: argparse.Namespace) -> str:
    from reviews_mtl.settings import TopicSettings

    return str(args.dlq or TopicSettings().dlq)


def _entries(args: argparse.Namespace) -> list[Any]:
    from confluent_kafka import KafkaException

    from reviews_mtl.dlq.reader import read_dead_letters
    from reviews_mtl.kafka import KafkaSetupError

    selection = _selection(args)
    kafka = _kafka(args)
    topic = _dlq_topic(args)
    try:
        return list(read_dead_letters(kafka, topic, selection))
    except (KafkaException, KafkaSetupError) as exc:
        raise _CliError(f"cannot read {topic}: {exc}") from exc


def _redriven(args: argparse.Namespace, sources: list[str]) -> dict[str, str] | None:
    """Each source's re-drive record, or None when Redis does not answer (list and show still work)."""
    import redis

    try:
        return {s: json.dumps(v) for s, v in _ledger(args).records(sources).items()}
    except redis.RedisError as exc:
        print(f"reviews-mtl dlq: re-drive record not read (Redis unavailable: {exc})", file=sys.stderr)
        return None


def _list(args: argparse.Namespace) -> int:
    from reviews_mtl.dlq.reader import summarize
    from reviews_mtl.dlq.render import entry_json, render_summary

    if args.samples < 0:
        raise _CliError("--samples must be >= 0", EXIT_USAGE)
    entries = _entries(args)
    summaries = summarize(entries, samples=args.samples)
    redriven = _redriven(args, [e.source for e in entries if e.source])
    if args.json:
        done = set(redriven or {})
        print(json.dumps({
            "topic": _dlq_topic(args),
            "total": len(entries),
            "redriven": None if redriven is None else sum(1 for e in entries if e.source in done),
            "reasons": [{"reason": s.reason, "count": s.count, "cut": s.cut, "first_ms": s.first_ms,
                         "last_ms": s.last_ms, "samples": [entry_json(e) for e in s.samples]} for s in summaries],
        }, indent=2))
        return EXIT_OK
    print(render_summary(_dlq_topic(args), summaries, None if redriven is None else set(redriven), entries))
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    from reviews_mtl.dlq.render import entry_json, render_entry

    if args.max_bytes < 1:
        raise _CliError("--max-bytes must be >= 1", EXIT_USAGE)
    entries = _entries(args)
    redriven = _redriven(args, [e.source for e in entries if e.source]) or {}
    if args.json:
        print(json.dumps([entry_json(e, redriven.get(e.source or "")) for e in entries], indent=2))
        return EXIT_OK
    if not entries:
        print(f"{_dlq_topic(args)}: no dead letters selected")
    for entry in entries:
        print(render_entry(entry, redriven.get(entry.source or ""), args.max_bytes))
    return EXIT_OK


def _redrive(args: argparse.Namespace) -> int:
    import redis
    from confluent_kafka import KafkaException

    from reviews_mtl.dlq.redrive import redrive
    from reviews_mtl.dlq.render import render_report, report_json
    from reviews_mtl.kafka import make_producer
    from reviews_mtl.settings import TopicSettings

    to_topic = str(args.to or TopicSettings().input)
    ledger = _ledger(args)
    try:
        ledger.client.ping()
    except redis.RedisError as exc:
        raise _CliError(f"Redis unavailable: {exc} (it records what was re-driven; nothing sent)") from exc
    entries = _entries(args)
    kafka = _kafka(args)
    producer = None if args.dry_run else make_producer(kafka)
    try:
        report = redrive(entries, ledger, producer, to_topic, dry_run=args.dry_run)
    except redis.RedisError as exc:
        raise _CliError(f"Redis failed during the re-drive: {exc}; run it again to send the rest") from exc
    except KafkaException as exc:
        raise _CliError(f"could not publish to {to_topic}: {exc}") from exc
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(render_report(report))
    return EXIT_OK if report.ok else EXIT_FAILED
