"""scripts/lint-k8s.sh (kubeconform, strict, with KEDA's CRD schemas) rejects what a cluster would reject.

`make lint` runs before the unit tests and caches the tools; where they are not cached these tests skip, since
building them needs the Go module proxy (a unit test never downloads).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "lint-k8s.sh"
TOOLS = Path(os.environ.get("REVIEWS_TOOLS_CACHE", Path.home() / ".cache" / "reviews-mtl" / "tools"))


def lint(directory: Path) -> subprocess.CompletedProcess[str]:
    if not any(TOOLS.glob("kubeconform-*/kubeconform")) or not any(TOOLS.glob("keda-schemas-*/.complete")):
        pytest.skip(f"kubeconform and the schemas are not cached in {TOOLS}: run `make lint-k8s` once")
    env = {**os.environ, "PY": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), str(directory)], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def test_the_manifests_as_committed_are_valid() -> None:
    result = lint(ROOT / "deploy" / "k8s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid: 10, Invalid: 0, Errors: 0, Skipped: 0" in result.stdout


def test_an_unknown_field_in_a_keda_object_or_a_deployment_fails(tmp_path: Path) -> None:
    broken = tmp_path / "k8s"
    shutil.copytree(ROOT / "deploy" / "k8s", broken)
    keda = broken / "keda.yaml"
    keda.write_text(keda.read_text().replace("  minReplicaCount: 1\n", "  minReplicaCount: 1\n  minReplicas: 1\n"))
    deployment = broken / "deployment-cpu.yaml"
    deployment.write_text(deployment.read_text().replace("\n  selector:", "\n  replicass: 2\n  selector:", 1))
    result = lint(broken)
    assert result.returncode != 0
    assert "additional properties 'minReplicas' not allowed" in result.stdout
    assert "additional properties 'replicass' not allowed" in result.stdout
