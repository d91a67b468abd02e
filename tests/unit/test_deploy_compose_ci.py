"""tests/compose/docker-compose.ci.yml changes only what a machine without a container registry needs, and the
stand-ins scripts/compose-ci.sh builds are the ones it names (same Kafka version as the real file and the tests)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from reviews_mtl.stack.apache_kafka import DEFAULT_KAFKA_VERSION
from tests.unit.test_deploy_images import args_of

ROOT = Path(__file__).resolve().parents[2]
OVERRIDE = ROOT / "tests" / "compose" / "docker-compose.ci.yml"
SCRIPT = ROOT / "scripts" / "compose-ci.sh"
RESET = object()


class _ComposeLoader(yaml.SafeLoader):  # type: ignore[misc]
    """PyYAML plus compose's ``!reset`` tag (drop the value the base file set)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: RESET)


@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    document: dict[str, Any] = yaml.load(OVERRIDE.read_text(), Loader=_ComposeLoader)
    return document


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def built_tags() -> set[str]:
    """The image tags compose-ci.sh builds (`build TAG CONTEXT` lines), with its version variables filled in."""
    script = SCRIPT.read_text()
    variables = dict(re.findall(r"^(\w+)=([\w.]+)$", script, re.MULTILINE))
    tags = re.findall(r"^\s*build\s+\"?([^\s\"]+)\"?\s", script, re.MULTILINE)
    return {re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], tag) for tag in tags}


def test_only_registry_substitutions(override: dict[str, Any], base: dict[str, Any]) -> None:
    services = override["services"]
    assert set(services) <= set(base["services"])
    allowed = {
        "kafka": {"image"}, "kafka-init": {"image"}, "redis": {"image"}, "prometheus": {"image"},
        "grafana": {"profiles"},
        "trainer": {"build", "image"},
    }
    assert {name: set(s) for name, s in services.items()} == allowed
    # Everything else of the real file stands: commands, environment, healthchecks, volumes, dependencies.
    for name in ("kafka", "kafka-init", "redis", "prometheus"):
        assert services[name]["image"].startswith("reviews-mtl-ci/"), name
    assert services["grafana"]["profiles"] == ["grafana"]
    # The trainer keeps its command (`test -f ... || train`) and runs it in the worker image instead of CUDA's.
    assert services["trainer"]["build"] is RESET
    assert services["trainer"]["image"] == base["services"]["consumer"]["image"]
    assert set(override) == {"services", "volumes"}
    (name,) = override["volumes"]
    assert name == "models"
    opts = override["volumes"]["models"]["driver_opts"]
    assert (opts["type"], opts["o"]) == ("none", "bind")
    assert opts["device"].startswith("${REVIEWS_CI_MODELS:?")


def test_the_stand_ins_it_names_are_the_ones_the_script_builds(override: dict[str, Any]) -> None:
    named = {s["image"] for s in override["services"].values() if "image" in s and "reviews-mtl-ci/" in s["image"]}
    tags = built_tags()
    assert named <= tags
    # The worker's FROM is a stand-in too, under its own name, so Dockerfile.worker builds unchanged.
    (python_base,) = args_of("Dockerfile.worker", "FROM")
    assert python_base in tags


def test_ci_runs_the_kafka_version_the_file_names_and_the_tests_use(
    override: dict[str, Any], base: dict[str, Any]
) -> None:
    real = base["services"]["kafka"]["image"].split(":")[1]
    stand_in = override["services"]["kafka"]["image"].split(":")[1]
    assert real == stand_in == DEFAULT_KAFKA_VERSION
