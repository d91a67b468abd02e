"""``python -m consumer``: one worker process (the same options as ``reviews-mtl consume``)."""

from __future__ import annotations

import argparse

from consumer.cli import add_arguments, run
from reviews_mtl.cli import configure_logging


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m consumer", description=__doc__)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args()
    configure_logging(args.verbose)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
