"""``reviews-mtl serve-model``: the predict endpoint over one model artifact (``POST /predict``, ``/healthz``,
OpenAPI at ``/docs``). Every bound is a flag and an environment variable ``REVIEWS_SERVE_*``; exit code 1 when
the artifact cannot be loaded or the port cannot be bound, 2 on a bad option."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from reviews_mtl.cli_args import EXIT_FAILED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from reviews_mtl.serving.settings import ServeSettings

# flag → ServeSettings field; unset flags leave the environment's (or the default) value.
_FLAGS: dict[str, tuple[type, str]] = {
    "host": (str, "address to listen on"),
    "port": (int, "port (0 picks a free one)"),
    "threads": (int, "ONNX Runtime intra-op threads; 0 = one per core"),
    "max_batch": (int, "most reviews in one model call"),
    "max_wait_ms": (float, "how long the oldest waiting request waits for others to share its model call"),
    "max_items": (int, "most reviews in one request (413 past it)"),
    "max_body_bytes": (int, "largest request body (413 past it)"),
    "max_queued": (int, "reviews waiting for the model before 429"),
    "max_connections": (int, "open connections before 503"),
    "timeout_s": (float, "wait for a model call before 503"),
}


def register(subparsers: Any) -> None:
    from reviews_mtl.cli_args import port_number
    from reviews_mtl.settings import RuntimeKind

    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve-model", help="HTTP predict endpoint over a model artifact (micro-batched)", description=__doc__)
    p.add_argument("--model", type=Path, required=True, help="model artifact directory")
    p.add_argument("--runtime", choices=get_args(RuntimeKind), default=None,
                   help="env REVIEWS_SERVE_RUNTIME (default auto: torch on CUDA, else onnx-int8)")
    for name, (kind, text) in _FLAGS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=port_number if name == "port" else kind, default=None,
                       dest=name,
                       help=f"{text} (env REVIEWS_SERVE_{name.upper()})")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> ServeSettings | str:
    """The settings, or why they are refused (one line)."""
    from pydantic import ValidationError

    from reviews_mtl.serving.settings import ServeSettings

    given = {name: getattr(args, name) for name in (*_FLAGS, "runtime") if getattr(args, name) is not None}
    try:
        return ServeSettings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        return f"--{where.replace('_', '-')} (or REVIEWS_SERVE_{where.upper()}): {first['msg']}"


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if isinstance(settings, str):
        print(f"reviews-mtl serve-model: {settings}", file=sys.stderr)
        return EXIT_USAGE
    import uvicorn

    from reviews_mtl.model import ArtifactError, load_predictor
    from reviews_mtl.model.artifact import validate_artifact
    from reviews_mtl.serving.app import create_app

    try:
        validate_artifact(args.model)
        predictor = load_predictor(args.model, runtime=settings.runtime, intra_op_threads=settings.threads,
                                   batch_size=settings.max_batch)
        predictor.predict(["warm-up"])  # the first call allocates; keep it off the first request
    except (ArtifactError, OSError, ValueError) as exc:
        print(f"reviews-mtl serve-model: cannot load {args.model}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    app = create_app(predictor, settings)
    print(f"serving {predictor.model_name} {predictor.model_version} on http://{settings.host}:{settings.port}/predict "
          "(API docs at /docs)", file=sys.stderr)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            limit_concurrency=settings.max_connections)
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit:  # uvicorn exits (3) after logging, in one line, why it could not bind
        return EXIT_FAILED
    return EXIT_OK if server.started else EXIT_FAILED

