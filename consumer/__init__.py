"""The streaming worker. Start reading at ``worker`` (the loop and its order of steps), then
``processing`` (one batch in, what goes out) and ``output`` (the Kafka transaction).

The public names load lazily, so ``python -m consumer`` installs its signal handlers before any heavy import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MicroBatcher": "consumer.batcher",
    "BatchOutput": "consumer.processing",
    "BatchProcessor": "consumer.processing",
    "InMessage": "consumer.processing",
    "Worker": "consumer.worker",
    "WorkerOptions": "consumer.worker",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'consumer' has no attribute {name!r}")
