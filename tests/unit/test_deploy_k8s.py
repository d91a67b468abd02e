"""deploy/k8s, checked by parsing and, for the built-in kinds, against Kubernetes' JSON schemas.

The schemas come inside the `kubernetes-validate` wheel (no download at run time). KEDA's CRDs and the
kustomization have no schema there; their fields are checked by the tests below.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from reviews_mtl.settings import ConsumerSettings
from reviews_mtl.settings import env_names as settings_env_names

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"
CRD_KINDS = {"ScaledObject", "TriggerAuthentication"}


def load_manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return load_manifests()


def one(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


@pytest.fixture(scope="module")
def config(manifests: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = one(manifests, "ConfigMap", "reviews-mtl-config")["data"]
    return data


@pytest.fixture(scope="module")
def secret(manifests: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = one(manifests, "Secret", "reviews-mtl-secrets")["stringData"]
    return data


@pytest.fixture(scope="module")
def deployments(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}


def worker_container(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_every_resource_is_in_the_kustomization(manifests: list[dict[str, Any]]) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert all(m["metadata"].get("namespace", kustomization["namespace"]) == kustomization["namespace"]
               for m in manifests)
    images = {image["name"] for image in kustomization["images"]}
    for deployment in manifests:
        if deployment["kind"] == "Deployment":
            assert worker_container(deployment)["image"].split(":")[0] in images


def test_the_expected_kinds_are_there(manifests: list[dict[str, Any]]) -> None:
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == sorted([
        "Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment", "Deployment", "Service",
        "PodDisruptionBudget", "TriggerAuthentication", "ScaledObject",
    ])


def test_builtin_kinds_validate_against_the_kubernetes_schemas(manifests: list[dict[str, Any]]) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="schema validation needs `pip install kubernetes-validate` (schemas bundled)"
    )
    for manifest in manifests:
        if manifest["kind"] not in CRD_KINDS:
            # strict: unknown fields (a misspelt key) are errors too.
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_schema_validator_rejects_a_broken_deployment(deployments: dict[str, dict[str, Any]]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    broken = yaml.safe_load(yaml.safe_dump(deployments["reviews-mtl-worker"]))
    worker_container(broken)["livenessProbe"]["httpGet"]["pathh"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_env_name_is_a_settings_field(
    config: dict[str, str], secret: dict[str, str], deployments: dict[str, dict[str, Any]]
) -> None:
    valid = settings_env_names()
    assert set(config) - valid == set()
    assert set(secret) - valid == set()
    for name, deployment in deployments.items():
        env = {item["name"] for item in worker_container(deployment).get("env", [])}
        assert env - valid == set(), name


def test_secrets_are_only_in_the_secret(config: dict[str, str], secret: dict[str, str]) -> None:
    assert {"KAFKA_SASL_PASSWORD", "REDIS_PASSWORD"} <= set(secret)
    assert not any("PASSWORD" in key for key in config)


def test_deployments_read_the_configmap_and_the_secret(deployments: dict[str, dict[str, Any]]) -> None:
    for deployment in deployments.values():
        sources = worker_container(deployment)["envFrom"]
        assert {"configMapRef": {"name": "reviews-mtl-config"}} in sources
        assert {"secretRef": {"name": "reviews-mtl-secrets"}} in sources


def test_probes_hit_healthz_and_readyz_on_the_metrics_port(
    config: dict[str, str], deployments: dict[str, dict[str, Any]]
) -> None:
    metrics_port = int(config["REVIEWS_CONSUMER_METRICS_PORT"])
    for name, deployment in deployments.items():
        container = worker_container(deployment)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports["metrics"] == metrics_port, name
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                            ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, (name, probe)
            assert ports.get(get["port"], get["port"]) == metrics_port, (name, probe)


def test_grace_period_is_longer_than_the_drain(
    config: dict[str, str], deployments: dict[str, dict[str, Any]]
) -> None:
    drain = float(config.get("REVIEWS_CONSUMER_DRAIN_TIMEOUT_S", ConsumerSettings().drain_timeout_s))
    for name, deployment in deployments.items():
        env = {item["name"]: item.get("value") for item in worker_container(deployment).get("env", [])}
        own_drain = float(env.get("REVIEWS_CONSUMER_DRAIN_TIMEOUT_S", drain))
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > own_drain, name


def test_cpu_worker_has_no_gpu_and_the_gpu_worker_requests_one(deployments: dict[str, dict[str, Any]]) -> None:
    cpu = worker_container(deployments["reviews-mtl-worker"])
    gpu = worker_container(deployments["reviews-mtl-gpu-worker"])
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    assert {"cpu", "memory"} <= set(cpu["resources"]["requests"])
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    runtimes = {c["image"]: {e["name"]: e.get("value") for e in c["env"]}["REVIEWS_CONSUMER_RUNTIME"]
                for c in (cpu, gpu)}
    assert runtimes == {"reviews-mtl-worker:0.1.0": "onnx-int8", "reviews-mtl-gpu-worker:0.1.0": "torch"}


def test_workers_run_as_non_root_and_mount_the_model_read_only(
    config: dict[str, str], deployments: dict[str, dict[str, Any]]
) -> None:
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        (mount,) = [m for m in worker_container(deployment)["volumeMounts"] if m["name"] == "models"]
        assert mount["readOnly"] is True
        assert config["REVIEWS_CONSUMER_MODEL_DIR"].startswith(mount["mountPath"] + "/")


def test_service_and_pdb_select_the_worker_pods(
    manifests: list[dict[str, Any]], deployments: dict[str, dict[str, Any]], config: dict[str, str]
) -> None:
    service = one(manifests, "Service", "reviews-mtl-metrics")
    pdb = one(manifests, "PodDisruptionBudget", "reviews-mtl-worker")
    for deployment in deployments.values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert service["spec"]["selector"].items() <= labels.items()
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    assert str(port["port"]) == config["REVIEWS_CONSUMER_METRICS_PORT"]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_keda_scales_the_cpu_workers_on_the_groups_lag(
    manifests: list[dict[str, Any]], config: dict[str, str], deployments: dict[str, dict[str, Any]]
) -> None:
    scaled = one(manifests, "ScaledObject", "reviews-mtl-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] in deployments
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == config["REVIEWS_CONSUMER_GROUP_ID"]
    assert meta["topic"] == config["REVIEWS_TOPIC_INPUT"]
    assert meta["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
    # KEDA's spelling of the same SASL mechanism and TLS switch the workers use.
    assert meta["sasl"] == config["KAFKA_SASL_MECHANISM"].lower().replace("-sha-", "_sha")
    assert (meta["tls"] == "enable") == config["KAFKA_SECURITY_PROTOCOL"].endswith("SSL")


def test_keda_lag_threshold_is_throughput_times_drain_time(manifests: list[dict[str, Any]]) -> None:
    scaled = one(manifests, "ScaledObject", "reviews-mtl-worker")
    notes = scaled["metadata"]["annotations"]
    rate = float(notes["reviews-mtl/per-replica-reviews-per-second"])
    drain = float(notes["reviews-mtl/target-drain-seconds"])
    (trigger,) = scaled["spec"]["triggers"]
    assert int(trigger["metadata"]["lagThreshold"]) == math.ceil(rate * drain)


def test_keda_per_replica_throughput_is_the_benchmarks_measured_figure(
    manifests: list[dict[str, Any]], deployments: dict[str, dict[str, Any]]
) -> None:
    """A pod is one replica with 2 CPUs and 2 ONNX threads: the README's end-to-end row for 1 replica x 2 threads
    (`reviews-mtl bench`, "Measured speed") is the figure KEDA must plan with, not a placeholder."""
    readme = (K8S.parents[1] / "README.md").read_text()
    match = re.search(r"^\| end to end, 1 replica × 2 threads[^|]*\| \*{0,2}([\d.]+)\*{0,2} /", readme, re.MULTILINE)
    assert match, "README.md's 'Measured speed' table lost its end-to-end row"
    measured = float(match.group(1))
    container = worker_container(deployments["reviews-mtl-worker"])
    assert container["resources"]["requests"]["cpu"] == "2"
    assert {e["name"]: e.get("value") for e in container["env"]}["REVIEWS_CONSUMER_INTRA_OP_THREADS"] == "2"
    scaled = one(manifests, "ScaledObject", "reviews-mtl-worker")
    rate = float(scaled["metadata"]["annotations"]["reviews-mtl/per-replica-reviews-per-second"])
    assert rate == math.floor(measured), f"KEDA plans with {rate} reviews/s per replica; bench measured {measured}"


def test_keda_never_asks_for_more_replicas_than_partitions(
    manifests: list[dict[str, Any]], config: dict[str, str], deployments: dict[str, dict[str, Any]]
) -> None:
    scaled = one(manifests, "ScaledObject", "reviews-mtl-worker")
    partitions = int(config["REVIEWS_TOPIC_PARTITIONS"])
    gpu_replicas = deployments["reviews-mtl-gpu-worker"]["spec"]["replicas"]
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] + gpu_replicas <= partitions
    # KEDA owns the CPU Deployment's scale: a fixed `replicas` would be reset by every `kubectl apply`.
    assert "replicas" not in deployments[scaled["spec"]["scaleTargetRef"]["name"]]["spec"]


def test_keda_credentials_come_from_the_secret(manifests: list[dict[str, Any]], secret: dict[str, str]) -> None:
    scaled = one(manifests, "ScaledObject", "reviews-mtl-worker")
    (trigger,) = scaled["spec"]["triggers"]
    auth = one(manifests, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(refs) == {"username", "password"}
    for ref in refs.values():
        assert ref["name"] == "reviews-mtl-secrets"
        assert ref["key"] in secret


def test_each_worker_pod_names_its_own_instance(deployments: dict[str, dict[str, Any]]) -> None:
    for deployment in deployments.values():
        env = {e["name"]: e for e in worker_container(deployment)["env"]}
        assert env["REVIEWS_CONSUMER_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
