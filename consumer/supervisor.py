"""Run N worker processes in one consumer group and keep them running.

A worker that dies unexpectedly (a crash, SIGKILL) is restarted after a short backoff; SIGTERM or
SIGINT is forwarded to every worker, which drains and exits; SIGHUP too (each looks for a new model artifact).
Running the ``consume`` command N times gives the same group; this is only a convenience for one machine.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from types import FrameType

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = 1.0


class Supervisor:
    def __init__(self, child_argv: Sequence[str], replicas: int, drain_timeout_s: float,
                 child_env: Mapping[str, str] | None = None, instance_id: str = "") -> None:
        self.child_argv = list(child_argv)
        self.replicas = replicas
        self.drain_timeout_s = drain_timeout_s
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        # Replica i of this run is "<instance>-r<i>": stable across its restarts (each fences the one before),
        # distinct from another supervisor's replicas on the same host.
        self.instance_id = instance_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Secrets such as a Redis URL with a password travel in the environment, never in a command line.
        self.child_env = {**os.environ, **(child_env or {}), "REVIEWS_CONSUMER_INSTANCE_ID": self.instance_id}

    def _spawn(self, index: int) -> None:
        argv = [sys.executable, "-m", "consumer", *self.child_argv, "--replica-index", str(index)]
        self.children[index] = subprocess.Popen(argv, env=self.child_env)
        log.info("replica %d started (pid %d)", index, self.children[index].pid)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def _forward_hangup(self, signum: int, frame: FrameType | None) -> None:
        # SIGHUP: every replica looks for a new model artifact at its next batch boundary.
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGHUP)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._forward)
        signal.signal(signal.SIGINT, self._forward)
        signal.signal(signal.SIGHUP, self._forward_hangup)
        for i in range(self.replicas):
            self._spawn(i)
        while not self.stopping:
            time.sleep(0.2)
            for index, child in list(self.children.items()):
                code = child.poll()
                if code is not None and not self.stopping:
                    log.warning("replica %d exited with %d; restarting", index, code)
                    time.sleep(RESTART_BACKOFF_S)
                    if not self.stopping:
                        self._spawn(index)
        deadline = time.monotonic() + self.drain_timeout_s + 5.0
        worst = 0
        for index, child in self.children.items():
            try:
                code = child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("replica %d did not drain in time; killing it", index)
                child.kill()
                code = child.wait()
            worst = worst or code
        return worst
