"""``python -m consumer``: one worker process (the same options as ``reviews-mtl consume``)."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _stop_while_starting(signum: int, frame: FrameType | None) -> None:
    # Nothing is consumed before the worker joins its group, so there is nothing to drain: exit cleanly.
    sys.exit(0)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_while_starting)
    signal.signal(signal.SIGINT, _stop_while_starting)
    import argparse

    from consumer.cli import add_arguments, run
    from reviews_mtl.cli import configure_logging, run_handler

    parser = argparse.ArgumentParser(prog="python -m consumer", description=__doc__)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args()
    configure_logging(args.verbose)
    return run_handler(run, args)  # any error is one line (the traceback with -v), as for reviews-mtl


if __name__ == "__main__":
    raise SystemExit(main())
