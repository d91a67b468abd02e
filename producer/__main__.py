"""``python -m producer ...`` is ``reviews-mtl produce ...``."""

from __future__ import annotations

import sys

from reviews_mtl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["produce", *sys.argv[1:]]))
