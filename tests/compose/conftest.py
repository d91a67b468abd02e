"""tests/compose runs only through `make compose-test` (scripts/compose-ci.sh), which prepares the Docker engine,
compose v2 and the stand-in images first and sets REVIEWS_COMPOSE_TEST=1; a bare `pytest` skips it."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("REVIEWS_COMPOSE_TEST") == "1":
        return
    skip = pytest.mark.skip(reason="run by `make compose-test` (scripts/compose-ci.sh prepares the engine first)")
    for item in items:
        if "tests/compose/" in str(item.path):
            item.add_marker(skip)
