"""Flags and argparse types shared by the subcommands (each subcommand registers its own parser)."""

from __future__ import annotations

import argparse

# Exit statuses every subcommand shares: 0 done, 1 failed (or nothing to show), 2 a usage or input error.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_kafka_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        default=None,
        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS; SASL/SSL via KAFKA_* variables)",
    )


def port_number(value: str) -> int:
    """An argparse type: a TCP port, 0 (pick a free one) to 65535."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0-65535)")
    return port


def add_redis_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default=None, help="Redis URL (env REDIS_URL)")
