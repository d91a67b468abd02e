"""The ``reviews-mtl`` command line.

Each subcommand lives beside the code it drives and exposes ``register(subparsers)``, which adds its
parser and sets ``func`` (``args -> exit code``). Registration imports nothing heavy: torch and
onnxruntime load only when a command runs. This entry point alone configures logging and signals.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

# The modules whose ``register(subparsers)`` adds each command group, in --help order.
_COMMAND_GROUPS: tuple[str, ...] = (
    "reviews_mtl.stack.cli",
    "reviews_mtl.training.cli",
    "producer.cli",
    "consumer.cli",
    "reviews_mtl.aggregates.cli",
    "reviews_mtl.bench.cli",
)

Handler = Callable[[argparse.Namespace], int]


def add_kafka_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        default=None,
        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS; SASL/SSL via KAFKA_* variables)",
    )


def add_redis_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default=None, help="Redis URL (env REDIS_URL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reviews-mtl",
        description="Streaming multi-task review analysis over Kafka and Redis.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_GROUPS:
        importlib.import_module(module_name).register(sub)
    return parser


def configure_logging(verbosity: int) -> None:
    level = logging.DEBUG if verbosity else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging(args.verbose)
    handler: Handler = args.func
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
