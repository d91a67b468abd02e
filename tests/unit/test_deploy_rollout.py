"""How a new model reaches production, as the deployment files say it: the dashboard's model-version and shadow
panels read metrics the worker exports, and the Kubernetes workers follow a ``current`` link on the model volume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from consumer.metrics import WorkerMetrics
from reviews_mtl.settings import ConsumerSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def exported() -> set[str]:
    registry = CollectorRegistry()
    WorkerMetrics.create(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]}


def panels() -> dict[str, list[str]]:
    dashboard: dict[str, Any] = json.loads((DEPLOY / "grafana/dashboards/reviews-mtl.json").read_text())
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}


def test_the_dashboard_shows_the_model_version_and_the_shadows_agreement() -> None:
    found = panels()
    known = exported()
    version = found["Model version serving (replicas per version)"]
    assert "count by (name, version, runtime) (reviews_mtl_model_info)" in version
    agreement = "\n".join(found["Shadow agreement with the live model"])
    assert "reviews_mtl_shadow_sentiment_agreements_total" in agreement
    assert "reviews_mtl_shadow_aspect_jaccard_sum" in agreement
    assert "reviews_mtl_shadow_rating_abs_delta_sum" in "\n".join(found["Shadow mean |Δ rating| (stars)"])
    assert "reviews_mtl_shadow_seconds_sum" in "\n".join(found["Shadow cost (model seconds per second)"])
    assert "reviews_mtl_model_reload_failures_total" in "\n".join(found["Model reloads and refused artifacts"])
    for name in ("reviews_mtl_model_info", "reviews_mtl_shadow_sentiment_agreements_total",
                 "reviews_mtl_shadow_aspect_jaccard_sum", "reviews_mtl_model_reload_failures_total"):
        assert name in known


def test_kubernetes_workers_follow_the_current_link_on_the_model_volume() -> None:
    config = yaml.safe_load((DEPLOY / "k8s/configmap.yaml").read_text())["data"]
    assert config["REVIEWS_CONSUMER_MODEL_DIR"] == "/models/current"
    assert ConsumerSettings(model_check_interval_s=config["REVIEWS_CONSUMER_MODEL_CHECK_INTERVAL_S"]) \
        .model_check_interval_s > 0  # hot reload is on
    deployment = yaml.safe_load((DEPLOY / "k8s/deployment-cpu.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "models"]
    assert config["REVIEWS_CONSUMER_MODEL_DIR"].startswith(mount["mountPath"] + "/")
    text = (DEPLOY / "k8s/deployment-cpu.yaml").read_text()
    assert "mv -T /models/current.new" in text  # the rollout is one atomic rename of the link
