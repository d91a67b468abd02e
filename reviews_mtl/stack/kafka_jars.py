"""Apache Kafka's classpath from Maven Central, fetched without Maven: the owner of the jar cache.

``kafka_jars.json`` (beside this file) pins, per Kafka version, every jar of the broker and its command-line
tools: its Maven Central path and SHA-256. ``fetch_jars`` downloads each over HTTPS into a staging directory,
checks the digest, writes a ``.complete`` marker and renames the directory into place, so an interrupted or
corrupted download never leaves a cache that looks complete. The cache is
``~/.cache/reviews-mtl/kafka/<version>/libs`` (``REVIEWS_KAFKA_CACHE`` moves the root), outside any clone.

A version that is not pinned falls back to ``mvn`` with ``deploy/kafka-local/pom.xml`` when both are there.
``scripts/pin-kafka-jars.py`` regenerates the pins from that POM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MAVEN_CENTRAL",
    "JarFetchError",
    "PinnedJar",
    "cache_root",
    "fetch_jars",
    "jars_dir",
    "pinned_jars",
    "pinned_versions",
]

logger = logging.getLogger(__name__)

# Maven's own default repository (what `mvn` uses with no settings.xml).
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
PINS = Path(__file__).with_name("kafka_jars.json")
COMPLETE = ".complete"


class JarFetchError(RuntimeError):
    """A jar could not be downloaded, did not match its pinned digest, or the version is not pinned."""


@dataclass(frozen=True)
class PinnedJar:
    path: str  # Maven repository layout: group/as/dirs/artifact/version/artifact-version.jar
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def cache_root() -> Path:
    override = os.environ.get("REVIEWS_KAFKA_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "reviews-mtl" / "kafka"


def jars_dir(version: str) -> Path:
    return cache_root() / version / "libs"


def pinned_versions() -> list[str]:
    return sorted(json.loads(PINS.read_text()))


def pinned_jars(version: str) -> list[PinnedJar]:
    pins = json.loads(PINS.read_text())
    if version not in pins:
        raise JarFetchError(f"Kafka {version} is not pinned in {PINS.name} (pinned: {', '.join(sorted(pins))})")
    return [PinnedJar(path=j["path"], sha256=j["sha256"], size=int(j["size"])) for j in pins[version]]


def _marker(jars: list[PinnedJar]) -> str:
    """What ``.complete`` holds: one digest over the pinned list, so a changed pin list means a refetch."""
    return hashlib.sha256("\n".join(f"{j.path} {j.sha256}" for j in jars).encode()).hexdigest()


def _is_complete(libs: Path, version: str) -> bool:
    marker = libs / COMPLETE
    if not marker.is_file():
        return False
    try:
        return marker.read_text().strip() == _marker(pinned_jars(version))
    except JarFetchError:
        return (libs / f"kafka_2.13-{version}.jar").is_file()  # fetched with mvn: no pin to compare with


def _download(jar: PinnedJar, target: Path, repository: str, timeout_s: float) -> None:
    url = f"{repository.rstrip('/')}/{jar.path}"
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, target.open("wb") as out:
            while chunk := response.read(1 << 16):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise JarFetchError(f"downloading {url} failed: {exc}") from exc
    if digest.hexdigest() != jar.sha256:
        raise JarFetchError(f"{url}: SHA-256 {digest.hexdigest()} does not match the pinned {jar.sha256}")


def _download_pinned(version: str, staging: Path, repository: str, timeout_s: float) -> None:
    from tqdm import tqdm

    jars = pinned_jars(version)
    total = sum(j.size for j in jars)
    with (
        tqdm(total=total, unit="B", unit_scale=True, desc=f"Kafka {version} jars", mininterval=0.5) as bar,
        ThreadPoolExecutor(max_workers=6) as pool,
    ):
        def one(jar: PinnedJar) -> None:
            _download(jar, staging / jar.name, repository, timeout_s)
            bar.update(jar.size)

        for future in [pool.submit(one, jar) for jar in jars]:
            future.result()
    (staging / COMPLETE).write_text(_marker(jars) + "\n")


def _resolve_with_maven(version: str, staging: Path, pom: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None or not pom.is_file():
        raise JarFetchError(
            f"Kafka {version} is not pinned ({', '.join(pinned_versions())} are) and there is no mvn and POM "
            f"({pom}) to resolve it"
        )
    argv = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom), f"-Dkafka.version={version}",
            "dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not (staging / f"kafka_2.13-{version}.jar").is_file():
        output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr).strip()[-4000:]
        raise JarFetchError(f"mvn could not resolve org.apache.kafka:kafka_2.13:{version}:\n{output}")
    (staging / COMPLETE).write_text("mvn\n")


def fetch_jars(
    version: str,
    *,
    force: bool = False,
    repository: str = MAVEN_CENTRAL,
    pom: Path | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """The libs directory of ``version``, downloading what the cache lacks first (idempotent)."""
    libs = jars_dir(version)
    if not force and _is_complete(libs, version):
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
    started = time.monotonic()
    try:
        if version in pinned_versions():
            logger.info("downloading Apache Kafka %s jars from %s into %s", version, repository, libs)
            _download_pinned(version, staging, repository, timeout_s)
        else:
            default_pom = Path(__file__).resolve().parents[2] / "deploy" / "kafka-local" / "pom.xml"
            _resolve_with_maven(version, staging, pom or default_pom)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            libs.parent.rmdir()  # only if empty: a version that does not exist leaves no trace
        raise
    # Swap in one rename each; a JVM already running from the old directory keeps its open jars.
    old = libs.with_name(f"libs.old-{os.getpid()}")
    if libs.exists():
        libs.rename(old)
    staging.rename(libs)
    shutil.rmtree(old, ignore_errors=True)
    logger.info("fetched %d jars in %.1fs", len(list(libs.glob("*.jar"))), time.monotonic() - started)
    return libs
