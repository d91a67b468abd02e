"""Plain-process plumbing for the local servers: free ports, spawning, liveness, stopping.

A process is identified by its pid *and* its kernel start time (``/proc/<pid>/stat`` field 22) so a pid file
left behind after a reboot or a crash never makes us signal an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class ProcessStartError(RuntimeError):
    """A server process exited or did not open its port before the deadline; the message ends with its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it, so parallel runs rarely collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def log_tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel sends SIGKILL when the parent thread dies, so
    # servers started by a test session never outlive a killed pytest.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    detach: bool = False,
    die_with_parent: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log_path``.

    ``detach`` puts it in a new session, so it outlives the command that started it and ignores that
    terminal's Ctrl-C; ``die_with_parent`` (Linux) kills it when this process dies instead.
    """
    if detach and die_with_parent:
        raise ValueError("detach and die_with_parent contradict each other")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    preexec: Callable[[], None] | None = _die_with_parent if die_with_parent else None
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
            preexec_fn=preexec,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            close_fds=True,
        )
    logger.debug("started pid %d: %s (log %s)", process.pid, " ".join(argv), log_path)
    return process


def wait_for(
    check: Callable[[], bool],
    *,
    what: str,
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    interval_s: float = 0.1,
) -> None:
    """Poll ``check`` until true; fail early and loudly if ``process`` exits meanwhile."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        if process is not None and process.poll() is not None:
            raise ProcessStartError(
                f"{what}: process {process.pid} exited with code {process.returncode}; log tail:\n{log_tail(log_path)}"
            )
        if time.monotonic() >= deadline:
            raise ProcessStartError(f"{what}: not ready after {timeout_s:.0f}s; log tail:\n{log_tail(log_path)}")
        time.sleep(interval_s)


def wait_for_port(
    host: str,
    port: int,
    *,
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    wait_for(
        lambda: port_open(host, port),
        what=f"port {host}:{port}",
        timeout_s=timeout_s,
        process=process,
        log_path=log_path,
    )


def start_time(pid: int) -> int | None:
    """The kernel start time of ``pid`` in clock ticks, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing one.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def is_alive(pid: int, started: int | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, when ``started`` is given, is the same process as before."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # exited, waiting to be reaped: dead for our purposes
        return False
    return started is None or int(fields[19]) == started


@dataclass(frozen=True)
class ProcessRecord:
    """What we remember about a server we started: enough to find and stop it from another process."""

    name: str
    pid: int
    started: int | None
    argv: tuple[str, ...]
    log: str

    @classmethod
    def of(cls, name: str, process: subprocess.Popen[bytes], log_path: Path) -> ProcessRecord:
        args = process.args
        argv = tuple(str(a) for a in args) if isinstance(args, list | tuple) else (str(args),)
        return cls(name, process.pid, start_time(process.pid), argv, str(log_path))

    def alive(self) -> bool:
        return is_alive(self.pid, self.started)


def stop_pid(pid: int, started: int | None = None, *, timeout_s: float = 10.0, name: str = "process") -> bool:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns True once the process is gone.

    Works for processes that are not our children (a detached stack started by an earlier command).
    """
    if not is_alive(pid, started):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    _reap(pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(pid, started):
            return True
        _reap(pid)
        time.sleep(0.05)
    logger.warning("%s (pid %d) ignored SIGTERM for %.0fs: killing it", name, pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_alive(pid, started):
            return True
        time.sleep(0.05)
    return False


def stop_all(records: Sequence[ProcessRecord], *, timeout_s: float = 10.0) -> list[str]:
    """SIGTERM every process at once, SIGKILL the stragglers after ``timeout_s``; names of those not stopped.

    Concurrent, because members of a cluster stopped one by one wait for peers that are already gone
    (a KRaft quorum of one out of three cannot acknowledge a controlled shutdown).
    """
    live = [r for r in records if r.alive()]
    for record in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for record in live:
            _reap(record.pid)
        live = [r for r in live if r.alive()]
        if not live:
            return []
        time.sleep(0.05)
    for record in live:
        logger.warning("%s (pid %d) ignored SIGTERM for %.0fs: killing it", record.name, record.pid, timeout_s)
        kill_pid(record.pid, record.started)
    return [r.name for r in live if r.alive()]


def kill_pid(pid: int, started: int | None = None) -> None:
    """SIGKILL, no grace: a crash, for fault tests."""
    if is_alive(pid, started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and is_alive(pid, started):
        _reap(pid)
        time.sleep(0.02)


def _reap(pid: int) -> None:
    # Our own children stay zombies until waited for; others are reaped by init and this is a no-op.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
