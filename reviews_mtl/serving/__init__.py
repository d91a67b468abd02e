"""A synchronous predict endpoint over one model artifact: ``reviews-mtl serve-model``.

Start reading here: ``settings`` (the bounds, env ``REVIEWS_SERVE_*``) → ``batcher`` (concurrent requests
share model calls: a bounded wait and a maximum batch, a bounded queue) → ``app`` (``POST /predict``,
``GET /healthz``, OpenAPI; the input contract's reasons as 422s) → ``cli``. Loads the model through
:mod:`reviews_mtl.model` only: never training code or torch (the import contract in ``pyproject.toml``).
"""

from reviews_mtl.serving.app import create_app
from reviews_mtl.serving.batcher import BatcherClosed, PredictionFailed, QueueFull, RequestBatcher
from reviews_mtl.serving.settings import ServeSettings

__all__ = ["BatcherClosed", "PredictionFailed", "QueueFull", "RequestBatcher", "ServeSettings", "create_app"]
