"""docker-compose.yml, Prometheus and Grafana files, checked by parsing (tests/compose runs the file for real).

What a typo would break silently at `docker compose up` is checked against the code it must agree with:
environment names against the settings classes, the dashboard's PromQL against the worker's metrics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from consumer.metrics import WorkerMetrics
from reviews_mtl.settings import ConsumerSettings, TopicSettings
from reviews_mtl.settings import env_names as settings_env_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "reviews-mtl.json"


def worker_metric_names() -> set[str]:
    """The series names the worker exports, from a real registry: counters as ``_total``, histograms as
    ``_bucket``/``_sum``/``_count``, gauges as they are."""
    registry = CollectorRegistry()
    WorkerMetrics.create(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- NAME=value` form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def own_services(services: dict[str, Any]) -> dict[str, Any]:
    """Services running our images (the others read their own, third-party variables)."""
    return {name: s for name, s in services.items() if str(s.get("image", "")).startswith("reviews-mtl")}


def test_settings_env_names_are_derived_from_the_classes() -> None:
    names = settings_env_names()
    assert {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "REVIEWS_CONSUMER_DRAIN_TIMEOUT_S"} <= names
    assert "REVIEWS_CONSUMER_NOT_A_FIELD" not in names


def host_port(mapping: str) -> tuple[str, str]:
    """``"${VAR:-9092}:9092"`` -> (the host port's default, the container port)."""
    match = re.fullmatch(r"(?:\$\{\w+:-(\d+)\}|(\d+)):(\d+)", mapping)
    assert match, mapping
    return match.group(1) or match.group(2), match.group(3)


def test_all_services_are_there(services: dict[str, Any]) -> None:
    assert set(services) == {
        "kafka", "kafka-init", "redis", "trainer", "consumer", "producer", "aggregates", "prometheus", "grafana",
    }
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka-init"]["image"] == services["kafka"]["image"]
    assert services["redis"]["image"].startswith("redis:7")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_our_services_are_built_from_our_dockerfiles(services: dict[str, Any]) -> None:
    expected = {
        "consumer": "deploy/docker/Dockerfile.worker",
        "producer": "deploy/docker/Dockerfile.worker",
        "aggregates": "deploy/docker/Dockerfile.worker",
        "trainer": "deploy/docker/Dockerfile.trainer",
    }
    assert set(own_services(services)) == set(expected)
    for name, dockerfile in expected.items():
        build = services[name]["build"]
        assert build["context"] == "."
        assert build["dockerfile"] == dockerfile
        assert (ROOT / dockerfile).is_file()


def test_every_env_name_on_our_services_is_a_settings_field(services: dict[str, Any]) -> None:
    valid = settings_env_names()
    for name, service in own_services(services).items():
        unknown = set(env_of(service)) - valid
        assert not unknown, f"{name}: {sorted(unknown)} are not fields of reviews_mtl.settings"


def test_kafka_is_kraft_with_an_internal_and_a_host_listener(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    env = env_of(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["INTERNAL"] == "kafka:19092"
    # The HOST listener advertises the host side of the published port, default and override alike.
    (mapping,) = kafka["ports"]
    variable = re.match(r"\$\{(\w+):-", mapping)
    assert variable, mapping
    assert advertised["HOST"] == f"localhost:${{{variable.group(1)}:-9092}}"
    assert host_port(mapping) == ("9092", "9092")
    assert "HOST://:9092" in env["KAFKA_LISTENERS"]
    # A single broker can only run transactions if their state log needs one replica.
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    for name, service in own_services(services).items():
        if name not in ("trainer", "aggregates"):
            assert env_of(service)["KAFKA_BOOTSTRAP_SERVERS"] == advertised["INTERNAL"], name


def test_topic_init_creates_every_topic_the_worker_writes(services: dict[str, Any]) -> None:
    script = "\n".join(services["kafka-init"]["command"])
    created = dict(re.findall(r"--create --if-not-exists --topic (\S+) --partitions (\d+)", script))
    topics = TopicSettings()
    assert set(created) == {topics.input, topics.enriched, topics.dlq, topics.alerts}
    assert int(created[topics.input]) == 6 == topics.partitions
    assert services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_healthchecks(services: dict[str, Any]) -> None:
    kafka_check = " ".join(services["kafka"]["healthcheck"]["test"])
    # Through the INTERNAL listener: the HOST one advertises a host port the container cannot reach.
    assert "kafka-broker-api-versions.sh --bootstrap-server kafka:19092" in kafka_check
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    consumer_check = " ".join(services["consumer"]["healthcheck"]["test"])
    port = env_of(services["consumer"])["REVIEWS_CONSUMER_METRICS_PORT"]
    assert f"http://127.0.0.1:{port}/healthz" in consumer_check


def test_the_aggregates_api_is_published_and_reads_the_compose_redis(services: dict[str, Any]) -> None:
    from reviews_mtl.settings import ApiSettings

    api = services["aggregates"]
    assert api["command"] == ["aggregates", "serve"]
    env = env_of(api)
    assert env["REVIEWS_API_HOST"] == "0.0.0.0"  # the default 127.0.0.1 would be unreachable from the host
    (mapping,) = api["ports"]
    assert host_port(mapping) == (str(ApiSettings().port), env["REVIEWS_API_PORT"])
    assert env["REDIS_URL"] == env_of(services["consumer"])["REDIS_URL"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"


def test_host_ports_can_be_moved(services: dict[str, Any]) -> None:
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert set(published) == {"kafka", "redis", "aggregates", "prometheus", "grafana"}
    for name, (mapping,) in published.items():
        assert mapping.startswith(f"${{REVIEWS_COMPOSE_{name.upper() if name != 'aggregates' else 'API'}_PORT:-"), (
            name, mapping)


def test_redis_keeps_an_append_only_file_on_a_volume(services: dict[str, Any]) -> None:
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in redis["volumes"]


def test_consumer_is_scalable(services: dict[str, Any]) -> None:
    consumer = services["consumer"]
    # A fixed name or host port would make `--scale consumer=2` fail on the second container.
    assert "container_name" not in consumer
    assert "ports" not in consumer
    assert env_of(consumer)["REVIEWS_CONSUMER_METRICS_PORT"] in consumer["expose"]


def test_consumer_waits_for_topics_redis_and_model(services: dict[str, Any]) -> None:
    depends = services["consumer"]["depends_on"]
    assert depends["kafka-init"]["condition"] == "service_completed_successfully"
    assert depends["trainer"]["condition"] == "service_completed_successfully"
    assert depends["redis"]["condition"] == "service_healthy"


def test_grace_period_is_longer_than_the_drain(services: dict[str, Any]) -> None:
    consumer = services["consumer"]
    drain = float(env_of(consumer).get("REVIEWS_CONSUMER_DRAIN_TIMEOUT_S", ConsumerSettings().drain_timeout_s))
    grace = consumer["stop_grace_period"]
    assert grace.endswith("s")
    assert float(grace[:-1]) > drain


def test_trainer_writes_the_model_volume_that_consumers_mount_read_only(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    assert "models" in compose["volumes"]
    assert "models:/models" in services["trainer"]["volumes"]
    assert "models:/models:ro" in services["consumer"]["volumes"]
    model_dir = env_of(services["consumer"])["REVIEWS_CONSUMER_MODEL_DIR"]
    trainer_script = " ".join(services["trainer"]["command"])
    assert f"--output {model_dir}" in trainer_script
    assert f"test -f {model_dir}/config.json" in trainer_script  # trains only when no artifact exists


def test_producer_streams_the_mounted_file(services: dict[str, Any]) -> None:
    producer = services["producer"]
    command = producer["command"]
    assert command[0] == "produce"
    input_path = command[command.index("--input") + 1]
    targets = [volume.split(":")[-2] for volume in producer["volumes"]]
    assert input_path in targets
    default_source = producer["volumes"][0].split(":-", 1)[1].split("}", 1)[0]
    assert (ROOT / default_source).is_file()


def test_persistent_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    named = {
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/", "$"))
    }
    assert named == set(compose["volumes"]) == {"kafka-data", "redis-data", "models"}


def test_bind_mounts_exist(services: dict[str, Any]) -> None:
    for service in (services["prometheus"], services["grafana"]):
        for volume in service["volumes"]:
            assert (ROOT / volume.split(":")[0]).exists(), volume


def test_prometheus_scrapes_every_consumer_replica(services: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "reviews-mtl-consumer"]
    (sd,) = job["dns_sd_configs"]
    # The compose service name resolves to one A record per replica.
    assert sd["names"] == ["consumer"]
    assert sd["type"] == "A"
    assert str(sd["port"]) == env_of(services["consumer"])["REVIEWS_CONSUMER_METRICS_PORT"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert mounted["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"


def test_grafana_provisioning_points_at_the_mounted_dashboards(services: dict[str, Any]) -> None:
    mounted = {v.split(":")[0]: v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert mounted["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load((GRAFANA / "provisioning/dashboards/reviews-mtl.yml").read_text())["providers"]
    assert provider["options"]["path"] == mounted["./deploy/grafana/dashboards"]
    (datasource,) = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"


# --- the dashboard ---------------------------------------------------------------------------------------------

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                 "offset"}


def promql_metric_names(expr: str) -> set[str]:
    """The series names an expression selects: what is left once strings, label matchers, ranges, groupings,
    function calls, keywords and numbers are taken out."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    identifiers = re.findall(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*(?!\s*\()(?![A-Za-z0-9_:])", expr)
    return {name for name in identifiers if name not in _PROMQL_WORDS}


def test_promql_parser_finds_metric_names() -> None:
    expr = 'histogram_quantile(0.95, sum by (le) (rate(reviews_mtl_x_bucket{topic="a"}[1m]))) / up'
    assert promql_metric_names(expr) == {"reviews_mtl_x_bucket", "up"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_uses_only_metrics_the_worker_exports(dashboard: dict[str, Any]) -> None:
    known = worker_metric_names()
    assert "reviews_mtl_consumed_messages_total" in known  # the registry really was read
    exprs = dashboard_exprs(dashboard)
    assert exprs
    for expr in exprs:
        names = promql_metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= known, f"{sorted(names - known)} in {expr!r} are not exported by consumer/metrics.py"


def test_dashboard_covers_what_the_issue_asks_for(dashboard: dict[str, Any]) -> None:
    exprs = "\n".join(dashboard_exprs(dashboard))
    assert "rate(reviews_mtl_enriched_reviews_total" in exprs  # throughput
    assert "reviews_mtl_consumer_lag_messages" in exprs
    assert "histogram_quantile(0.99, sum by (le) (rate(reviews_mtl_end_to_end_latency_seconds_bucket" in exprs
    assert "reviews_mtl_batch_size_messages" in exprs
    assert "sum by (reason) (rate(reviews_mtl_dead_letters_total" in exprs
    # The analytics issue: alerts, live MAE and accuracy per model version, drift.
    for metric in ("reviews_mtl_alerts_total", "reviews_mtl_live_rating_mae", "reviews_mtl_live_star5_accuracy",
                   "reviews_mtl_live_sentiment_agreement", "reviews_mtl_prediction_drift_psi"):
        assert metric in exprs, metric


def test_dashboard_panels_use_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    (datasource,) = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
