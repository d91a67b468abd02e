#!/usr/bin/env python3
"""Pin the Apache Kafka broker's classpath: resolve deploy/kafka-local/pom.xml with Maven once, record every jar's
Maven Central path and SHA-256 in reviews_mtl/stack/kafka_jars.json.

Run it (on a machine with ``mvn``) when the POM or the Kafka version changes:

    python scripts/pin-kafka-jars.py [--version 4.1.1]

Users never need Maven: ``reviews_mtl.stack.apache_kafka.fetch_jars`` downloads the pinned jars directly and
checks each digest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POM = ROOT / "deploy" / "kafka-local" / "pom.xml"
PINS = ROOT / "reviews_mtl" / "stack" / "kafka_jars.json"


def resolve(version: str) -> list[dict[str, str | int]]:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SystemExit("mvn is not on PATH: pinning needs Maven once (users do not)")
    with tempfile.TemporaryDirectory(prefix="kafka-pin-") as tmp:
        out = Path(tmp)
        subprocess.run(
            [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM), f"-Dkafka.version={version}",
             "dependency:copy-dependencies", f"-DoutputDirectory={out}", "-Dmdep.useRepositoryLayout=true"],
            check=True,
        )
        jars = sorted(out.rglob("*.jar"))
        return [
            {"path": jar.relative_to(out).as_posix(), "size": jar.stat().st_size,
             "sha256": hashlib.sha256(jar.read_bytes()).hexdigest()}
            for jar in jars
        ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default="4.1.1")
    args = parser.parse_args()
    pins = json.loads(PINS.read_text()) if PINS.exists() else {}
    pins[args.version] = resolve(args.version)
    PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    print(f"{len(pins[args.version])} jars pinned for Kafka {args.version} in {PINS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
