"""A thin driver of ``docker compose`` for the compose test: one project, its containers, health and exit codes.

Everything goes through the ``docker`` CLI (no Docker SDK), as a person would type it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CI_OVERRIDE = Path(__file__).with_name("docker-compose.ci.yml")
PROJECT = "reviews-mtl-ci"


class CommandFailed(AssertionError):
    pass


def docker(*args: str, timeout_s: float = 600, env: Mapping[str, str] | None = None, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s,
                            env=dict(env) if env is not None else None, check=False)
    if check and result.returncode != 0:
        raise CommandFailed(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass
class Compose:
    """``docker compose -p reviews-mtl-ci -f docker-compose.yml -f tests/compose/docker-compose.ci.yml ...``."""

    env: dict[str, str]
    project: str = PROJECT
    files: tuple[Path, ...] = (COMPOSE_FILE, CI_OVERRIDE)
    log: list[str] = field(default_factory=list)

    def __call__(self, *args: str, timeout_s: float = 900, check: bool = True) -> str:
        argv = ["compose", "-p", self.project, *(a for f in self.files for a in ("-f", str(f))), *args]
        started = time.monotonic()
        out = docker(*argv, timeout_s=timeout_s, env=self.env, check=check)
        if args[0] != "ps":
            self.log.append(f"{time.monotonic() - started:6.1f}s  docker compose {' '.join(args)}")
        return out

    def containers(self, service: str, *, all_states: bool = True) -> list[str]:
        """Container ids of one service (stopped ones too, unless ``all_states`` is False)."""
        args = ["ps", "-q", *(["--all"] if all_states else []), service]
        return self(*args).split()

    def inspect(self, container: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(docker("inspect", container))
        return found[0]

    def state(self, container: str) -> dict[str, Any]:
        state: dict[str, Any] = self.inspect(container)["State"]
        return state

    def health(self, container: str) -> str:
        return str((self.state(container).get("Health") or {}).get("Status", "none"))

    def logs(self, service: str, tail: int = 60) -> str:
        return self("logs", "--no-color", "--tail", str(tail), service, check=False)

    def wait(self, done: Callable[[], bool], timeout_s: float, what: str, services: tuple[str, ...] = ()) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(1.0)
        logs = "\n".join(f"--- {s}\n{self.logs(s)}" for s in services)
        raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{logs}")

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this project that still exist."""
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": docker("ps", "-aq", "--filter", label).split(),
            "networks": docker("network", "ls", "-q", "--filter", label).split(),
            "volumes": docker("volume", "ls", "-q", "--filter", label).split(),
        }
