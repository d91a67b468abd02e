"""The ``reviews-mtl`` command line.

Each subcommand lives beside the code it drives and exposes ``register(subparsers)``, which adds its
parser and sets ``func`` (``args -> exit code``). Registration imports nothing heavy: torch and
onnxruntime load only when a command runs. This entry point alone configures logging and signals.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from reviews_mtl.terminal import one_line

# The modules whose ``register(subparsers)`` adds each command group, in --help order.
_COMMAND_GROUPS: tuple[str, ...] = (
    "reviews_mtl.stack.cli",
    "reviews_mtl.training.cli",
    "reviews_mtl.eda",
    "producer.cli",
    "consumer.cli",
    "consumer.backfill_cli",
    "reviews_mtl.aggregates.cli",
    "reviews_mtl.aggregates.analytics_cli",
    "reviews_mtl.dlq.cli",
    "reviews_mtl.serving.cli",
    "reviews_mtl.bench.cli",
)

Handler = Callable[[argparse.Namespace], int]


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
    from pydantic import ValidationError

    from reviews_mtl.settings import invalid_variable

    try:
        parser = build_parser()  # the flags' defaults come from the environment
    except ValidationError as exc:
        print(f"reviews-mtl: error: {one_line(invalid_variable(exc))}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging(args.verbose)
    return run_handler(args.func, args)


def run_handler(handler: Handler, args: argparse.Namespace) -> int:
    """Run one command; whatever goes wrong is one line on stderr (the traceback only with ``-v``)."""
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as a program killed by SIGPIPE would.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        return _report(exc, verbose=bool(getattr(args, "verbose", 0)))


def _report(exc: Exception, *, verbose: bool) -> int:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = f"invalid setting {where}: {first['msg']}" if where else f"invalid settings: {first['msg']}"
    elif str(exc) and (isinstance(exc, (ValueError, OSError)) or type(exc).__module__ != "builtins"):
        message = str(exc)  # our own errors and the libraries' say what went wrong in their message
    else:
        message = f"{type(exc).__name__}: {exc}"
    if verbose:
        traceback.print_exc(file=sys.stderr)
    print(f"reviews-mtl: error: {one_line(message)}" + ("" if verbose else " (run with -v for details)"),
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
