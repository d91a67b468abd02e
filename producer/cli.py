"""``reviews-mtl produce``: publish review files to Kafka, or export reviews as contract JSONL.

Inputs (one of): ``--input FILE...`` (JSONL, CSV, Parquet; ``-`` is JSONL on stdin), ``--from-data DIR``
(the star-rated sources of ``../shared/data``). Output: the ``--topic`` on the brokers, or with
``--export-jsonl OUT`` a JSONL file in the input contract instead. Every option is also an environment
variable (``KAFKA_*``, ``REVIEWS_PRODUCER_*``, ``REVIEWS_TOPIC_INPUT``), read by the classes of
:mod:`reviews_mtl.settings` (``ProducerCliSettings`` for the flags here); a flag wins over the variable.

Exit codes: 0 every valid record acknowledged (or written); 1 a delivery failed, or an invalid row while
``--on-invalid fail``; 2 an input that cannot be read or a bad option.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reviews_mtl.cli_args import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from reviews_mtl.settings import ProducerCliSettings

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    env = ProducerCliSettings()
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "produce",
        help="publish reviews from files to Kafka (or export them as JSONL)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("input")
    source.add_argument(
        "--input",
        "-i",
        nargs="+",
        metavar="FILE",
        default=env.input,
        help="JSONL (.jsonl/.ndjson/.json, optionally .gz), CSV or Parquet files; '-' reads JSONL from stdin "
        "(env REVIEWS_PRODUCER_INPUT, paths separated by ':')",
    )
    source.add_argument(
        "--from-data",
        type=Path,
        metavar="DIR",
        default=env.from_data,
        help="read the star-rated review sources of this data directory, e.g. ../shared/data "
        "(env REVIEWS_PRODUCER_FROM_DATA)",
    )
    source.add_argument(
        "--sources",
        nargs="+",
        metavar="NAME",
        default=env.sources,
        help="with --from-data: only these sources (env REVIEWS_PRODUCER_SOURCES, ':'-separated)",
    )
    source.add_argument(
        "--format",
        choices=("jsonl", "csv", "parquet"),
        default=env.format,
        help="file format, when the suffix does not tell (env REVIEWS_PRODUCER_FORMAT)",
    )
    source.add_argument(
        "--limit",
        type=int,
        metavar="N",
        default=env.limit,
        help="stop after N valid reviews (env REVIEWS_PRODUCER_LIMIT)",
    )
    source.add_argument(
        "--shuffle",
        action="store_true",
        default=env.shuffle,
        help="with --from-data: mix sources, seeded (env REVIEWS_PRODUCER_SHUFFLE)",
    )
    source.add_argument(
        "--seed",
        type=int,
        default=env.seed,
        help="shuffle seed (env REVIEWS_PRODUCER_SEED, default 0)",
    )
    source.add_argument(
        "--on-invalid",
        choices=("skip", "fail"),
        default=None,
        help="an invalid row is reported and skipped, or fails the run before anything is sent "
        "(env REVIEWS_PRODUCER_ON_INVALID, default skip)",
    )

    kafka = parser.add_argument_group("kafka")
    kafka.add_argument(
        "--bootstrap-servers",
        default=None,
        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS; SASL/SSL via KAFKA_* variables)",
    )
    kafka.add_argument("--topic", default=None, help="target topic (env REVIEWS_TOPIC_INPUT, default reviews)")
    kafka.add_argument(
        "--rate", type=float, default=None, metavar="N", help="records per second (env REVIEWS_PRODUCER_RATE)"
    )
    kafka.add_argument(
        "--compression",
        choices=("none", "gzip", "snappy", "lz4", "zstd"),
        default=None,
        help="env REVIEWS_PRODUCER_COMPRESSION, default lz4",
    )
    kafka.add_argument(
        "--delivery-timeout-ms",
        type=int,
        default=None,
        help="give up on a record after this long (env REVIEWS_PRODUCER_DELIVERY_TIMEOUT_MS, default 30000)",
    )
    kafka.add_argument(
        "--stamp-now",
        action="store_true",
        default=env.stamp_now,
        help="set each review's timestamp to its send time, for end-to-end latency tests "
        "(env REVIEWS_PRODUCER_STAMP_NOW)",
    )

    out = parser.add_argument_group("output")
    out.add_argument(
        "--export-jsonl",
        type=Path,
        metavar="OUT",
        default=env.export_jsonl,
        help="write the valid reviews to OUT as contract JSONL (timestamps filled in) instead of sending "
        "(env REVIEWS_PRODUCER_EXPORT_JSONL)",
    )
    out.add_argument(
        "--json",
        action="store_true",
        default=env.json_summary,
        help="print the summary as JSON (env REVIEWS_PRODUCER_JSON)",
    )
    out.add_argument(
        "--no-progress",
        action="store_true",
        default=env.no_progress,
        help="no progress bar; by default one is shown only on a terminal (env REVIEWS_PRODUCER_NO_PROGRESS)",
    )
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> tuple[Any, Any, str]:
    from reviews_mtl.settings import KafkaSettings, ProducerSettings, TopicSettings

    kafka_kw = {"bootstrap_servers": args.bootstrap_servers} if args.bootstrap_servers else {}
    overrides = {
        "rate": args.rate,
        "on_invalid": args.on_invalid,
        "compression": args.compression,
        "delivery_timeout_ms": args.delivery_timeout_ms,
    }
    producer = ProducerSettings(**{k: v for k, v in overrides.items() if v is not None})
    topic = args.topic or TopicSettings().input
    return KafkaSettings(**kafka_kw), producer, topic


def _records(args: argparse.Namespace) -> Iterator[Any]:
    """The input as a fresh stream of records (called twice when invalid rows are fatal)."""
    from producer.readers import read_records
    from producer.records import ValidRecord

    if args.from_data is not None:
        from producer.export import reviews_from_data

        # Loaded once (tens of thousands of reviews parse in seconds) even when the stream is read twice.
        reviews = getattr(args, "_data_reviews", None)
        if reviews is None:
            reviews = reviews_from_data(
                args.from_data, sources=args.sources, limit=args.limit, shuffle=args.shuffle, seed=args.seed
            )
            args._data_reviews = reviews
        for number, review in enumerate(reviews, start=1):
            yield ValidRecord(str(args.from_data), number, review)
        return
    valid = 0
    for record in read_records(args.input, args.format):
        if args.limit is not None and valid >= args.limit:
            return
        if isinstance(record, ValidRecord):
            valid += 1
        yield record


def _print_summary(summary: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(summary.render())


def _export(args: argparse.Namespace, on_invalid: str) -> int:
    from producer.export import with_timestamps, write_jsonl
    from producer.publisher import PublishSummary, check_all_valid
    from producer.records import InvalidRecord

    summary = PublishSummary(topic=f"file:{args.export_jsonl}")
    if on_invalid == "fail":
        total = check_all_valid(_records(args))
    else:
        total = sum(1 for r in _records(args) if not isinstance(r, InvalidRecord))

    def valid() -> Iterator[Any]:
        for record in _records(args):
            if isinstance(record, InvalidRecord):
                summary.invalid += 1
                if len(summary.invalid_records) < 20:
                    summary.invalid_records.append(record)
                logger.warning("invalid record skipped: %s", record)
            else:
                yield record.review

    start = time.monotonic()
    summary.sent = write_jsonl(with_timestamps(valid(), total), args.export_jsonl)
    summary.elapsed_s = time.monotonic() - start
    if args.json:
        _print_summary(summary, True)
    else:
        print(
            f"wrote {summary.sent} reviews to {args.export_jsonl} in {summary.elapsed_s:.2f}s, "
            f"invalid {summary.invalid}"
        )
        for record in summary.invalid_records:
            print(f"  invalid {record}")
    return EXIT_OK


def _preflight(args: argparse.Namespace) -> None:
    """Fail on a missing file or an unknown format before connecting to anything."""
    from producer.errors import InputError
    from producer.readers import STDIN, detect_format

    if args.from_data is not None:
        if not Path(args.from_data).is_dir():
            raise InputError(f"{args.from_data}: not a directory")
        return
    for path in args.input:
        if args.format is None:
            detect_format(path)
        if path != STDIN and not Path(path).is_file():
            raise InputError(f"{path}: no such file")


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from producer.errors import InputError, InvalidRecordError, ProducerError

    if (args.input is None) == (args.from_data is None):
        print("reviews-mtl produce: give exactly one of --input FILE... or --from-data DIR", file=sys.stderr)
        return EXIT_USAGE
    if args.limit is not None and args.limit < 0:
        print("reviews-mtl produce: --limit must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        kafka, settings, topic = _settings(args)
    except ValidationError as exc:
        print(f"reviews-mtl produce: invalid setting: {exc}", file=sys.stderr)
        return EXIT_USAGE

    try:
        _preflight(args)
        if args.export_jsonl is not None:
            return _export(args, settings.on_invalid)
        from producer.publisher import Publisher, check_all_valid, publish_records

        total = None
        if settings.on_invalid == "fail" and args.from_data is None:
            if args.input == ["-"]:
                print("reviews-mtl produce: --on-invalid fail needs files, not stdin", file=sys.stderr)
                return EXIT_USAGE
            # Validate everything first: an input with a bad row sends nothing at all.
            total = check_all_valid(_records(args))
        publisher = Publisher(topic, kafka, settings)
        summary = publish_records(
            _records(args),
            publisher,
            rate=settings.rate,
            progress=False if args.no_progress else None,
            total=total,
            timestamp_now=args.stamp_now,
        )
    except InvalidRecordError as exc:
        for record in exc.invalid:
            print(f"invalid {record}", file=sys.stderr)
        print(
            f"reviews-mtl produce: {exc.total_invalid} invalid row(s); nothing sent (--on-invalid fail)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except InputError as exc:
        print(f"reviews-mtl produce: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ProducerError as exc:
        print(f"reviews-mtl produce: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _print_summary(summary, args.json)
    if not summary.ok:
        print(f"reviews-mtl produce: {summary.failed} record(s) NOT delivered to {topic}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
