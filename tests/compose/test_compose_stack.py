"""docker-compose.yml run for real: build, up, stream, scale to 3 consumers mid-run, verify, stop, remove.

Run by ``make compose-test`` (scripts/compose-ci.sh prepares the engine, compose v2 and the stand-in images first;
run alone, these tests need that done). The real file plus tests/compose/docker-compose.ci.yml, nothing else.
The tests share one stack and run in file order:

1. the worker image builds from deploy/docker/Dockerfile.worker, torch-free; its size is printed;
2. ``up`` (1 consumer): Kafka, topics, Redis, the trainer step, the consumer, the aggregates API and Prometheus
   turn healthy (or, for the one-shot services, exit 0);
3. the compose ``producer`` service streams N reviews; once the first are counted, ``--scale consumer=3``;
   every review is then on ``reviews.enriched`` exactly once (read_committed) and Redis equals a recount;
4. Prometheus scraped all 3 replicas (``up`` = 1), each of which owned partitions and enriched reviews;
5. the aggregates API serves what Redis holds;
6. the GPU worker's and trainer's entrypoints, run in the torch-free worker image, get as far as needing torch;
7. ``docker compose stop`` sends SIGTERM: every consumer drains and exits 0;
and at the end ``down --volumes`` leaves no container, network or volume of the project.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from reviews_mtl.aggregates.store import AggregateStore
from reviews_mtl.kafka import read_topic
from reviews_mtl.settings import KafkaSettings
from reviews_mtl.stack.processes import free_port
from tests.compose.compose import Compose, docker
from tests.integration.consumer_harness import assert_aggregates_match_recount, make_reviews
from tests.unit.test_deploy_images import args_of, env_names

pytestmark = [pytest.mark.compose]

# The producer service streams at 200 reviews/s (docker-compose.yml): 30 s, so the two replicas added mid-run
# still find work once they have joined.
REVIEWS = int(os.environ.get("REVIEWS_COMPOSE_TEST_REVIEWS", "6000"))
REPLICAS = 3
WORKER_IMAGE = "reviews-mtl-worker:latest"


def _stage_models(model_dir: Path, target: Path) -> Path:
    """``target/demo`` = the host's demo model, hard-linked (no copy) where the filesystem allows."""
    demo = target / "demo"
    demo.mkdir(parents=True)
    for path in model_dir.iterdir():
        if path.is_file():
            try:
                os.link(path, demo / path.name)
            except OSError:
                shutil.copy2(path, demo / path.name)
    return target


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Iterator[dict[str, Any]]:
    if shutil.which("docker") is None:
        pytest.fail("no docker CLI: run `make compose-test` (scripts/compose-ci.sh prepares everything)")
    tmp = tmp_path_factory.mktemp("compose")
    reviews = make_reviews(REVIEWS, products=40)
    input_file = tmp / "reviews.jsonl"
    input_file.write_bytes(b"".join(r.to_bytes() + b"\n" for r in reviews))
    input_file.chmod(0o644)
    ports = {name: free_port() for name in ("KAFKA", "REDIS", "API", "PROMETHEUS", "GRAFANA")}
    env = {
        **os.environ,
        "REVIEWS_CI_MODELS": str(_stage_models(demo_model_dir, tmp / "models")),
        "REVIEWS_INPUT_FILE": str(input_file),
        **{f"REVIEWS_COMPOSE_{name}_PORT": str(port) for name, port in ports.items()},
    }
    compose = Compose(env)
    compose("down", "--volumes", "--remove-orphans", check=False)  # what an interrupted run left
    info = {"compose": compose, "reviews": reviews, "ports": ports}
    try:
        yield info
    finally:
        compose("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
        print("\n" + "\n".join(compose.log))
    assert compose.leftovers() == {"containers": [], "networks": [], "volumes": []}


def _prometheus(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(query)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        payload = json.load(response)
    assert payload["status"] == "success", payload
    result: list[dict[str, Any]] = payload["data"]["result"]
    return result


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        body = response.read()
    return json.loads(body) if body.startswith((b"{", b"[")) else body.decode()


def test_the_worker_image_builds_small_and_torch_free(stack: dict[str, Any]) -> None:
    compose: Compose = stack["compose"]
    compose("build", "consumer", timeout_s=1200)
    size = int(docker("image", "inspect", "-f", "{{.Size}}", WORKER_IMAGE).strip())
    print(f"\n{WORKER_IMAGE}: {size / 1e6:.0f} MB")
    probe = docker("run", "--rm", "--entrypoint", "python", WORKER_IMAGE, "-c",
                   "import importlib.util as u, onnxruntime, tokenizers, fastapi, uvicorn;"
                   "print(u.find_spec('torch') is None, u.find_spec('transformers') is None)")
    assert probe.split() == ["True", "True"]
    assert size < 800e6, f"the CPU worker image is {size / 1e6:.0f} MB"


def test_up_turns_every_service_healthy(stack: dict[str, Any]) -> None:
    compose: Compose = stack["compose"]
    compose("up", "--detach", "kafka", "redis", "consumer", "aggregates", "prometheus", timeout_s=600)
    healthy = ("kafka", "redis", "consumer", "aggregates")
    compose.wait(lambda: all(compose.health(c) == "healthy" for s in healthy for c in compose.containers(s)),
                 240, f"{', '.join(healthy)} healthy", services=healthy)
    # Prometheus: its own health check, and the one-shot steps exited 0.
    compose.wait(lambda: compose.health(compose.containers("prometheus")[0]) == "healthy", 60, "prometheus healthy",
                 services=("prometheus",))
    for one_shot in ("kafka-init", "trainer"):
        (container,) = compose.containers(one_shot)
        state = compose.state(container)
        assert (state["Status"], state["ExitCode"]) == ("exited", 0), compose.logs(one_shot)
    assert len(compose.containers("consumer")) == 1


def test_stream_scale_to_three_and_every_review_counts_exactly_once(stack: dict[str, Any]) -> None:
    compose: Compose = stack["compose"]
    ports = stack["ports"]
    reviews = stack["reviews"]
    store = AggregateStore(redis.Redis.from_url(f"redis://127.0.0.1:{ports['REDIS']}/0"))
    compose("up", "--detach", "--no-deps", "producer")
    compose.wait(lambda: store.totals().get("reviews", 0) >= 100, 180, "the first consumer to count 100 reviews",
                 services=("producer", "consumer"))
    counted_before_scale = store.totals()["reviews"]
    compose("up", "--detach", "--no-deps", "--no-recreate", "--scale", f"consumer={REPLICAS}", "consumer")
    assert len(compose.containers("consumer")) == REPLICAS
    (producer,) = compose.containers("producer")
    compose.wait(lambda: compose.state(producer)["Status"] == "exited", 300, "the producer to finish",
                 services=("producer",))
    assert compose.state(producer)["ExitCode"] == 0, compose.logs("producer")
    assert counted_before_scale < len(reviews), "the scale-up came after the stream had ended"
    compose.wait(lambda: store.totals().get("reviews", 0) >= len(reviews), 600,
                 f"{len(reviews)} reviews counted", services=("consumer",))

    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{ports['KAFKA']}")
    records = [json.loads(m.value() or b"") for m in read_topic(kafka, "reviews.enriched", timeout_s=60)]
    ids = Counter(r["review_id"] for r in records)
    assert {i: n for i, n in ids.items() if n > 1} == {}, "a review was enriched twice"
    assert set(ids) == {r.review_id for r in reviews}
    assert read_topic(kafka, "reviews.dlq", timeout_s=30) == []
    assert store.totals()["reviews"] == len(reviews)
    assert_aggregates_match_recount(store, records)
    stack["records"] = records


def test_prometheus_scraped_every_replica_and_each_did_work(stack: dict[str, Any]) -> None:
    compose: Compose = stack["compose"]
    port = stack["ports"]["PROMETHEUS"]
    job = 'job="reviews-mtl-consumer"'

    def three_up() -> bool:
        result = _prometheus(port, f"up{{{job}}}")
        return len(result) == REPLICAS and all(r["value"][1] == "1" for r in result)

    compose.wait(three_up, 90, f"{REPLICAS} Prometheus targets up", services=("prometheus",))
    partitions = _prometheus(port, f"sum by (instance) (reviews_mtl_assigned_partitions{{{job}}})")
    assert sorted(int(float(r["value"][1])) for r in partitions) == [2, 2, 2], partitions
    per_replica = f"sum by (instance) (reviews_mtl_enriched_reviews_total{{{job}}})"

    def all_scraped() -> bool:  # the last batches reach Prometheus on its next scrape (every 5 s)
        return sum(float(r["value"][1]) for r in _prometheus(port, per_replica)) >= len(stack["reviews"])

    compose.wait(all_scraped, 60, f"Prometheus to have scraped {len(stack['reviews'])} enriched reviews",
                 services=("prometheus",))
    enriched = _prometheus(port, per_replica)
    assert len(enriched) == REPLICAS and all(float(r["value"][1]) > 0 for r in enriched), enriched


def test_the_aggregates_api_serves_the_counts(stack: dict[str, Any]) -> None:
    port = stack["ports"]["API"]
    assert _get(port, "/healthz")["status"] == "ok"
    records = stack["records"]
    product = Counter(r["product_id"] for r in records).most_common(1)[0]
    assert _get(port, f"/api/products/{product[0]}")["review_count"] == product[1]
    top = _get(port, "/api/top?by=review_count&n=3&min_reviews=1")
    assert top["items"][0]["value"] == product[1]
    assert "<html" in _get(port, "/").lower()


@pytest.mark.parametrize(("dockerfile", "needs"), [
    ("Dockerfile.gpu-worker", "No module named 'torch'"),
    ("Dockerfile.trainer", "No module named 'torch'"),
])
def test_gpu_worker_and_trainer_entrypoints_reach_torch_in_the_stand_in(
    stack: dict[str, Any], dockerfile: str, needs: str
) -> None:
    """The CUDA images are built only on request (several GB of wheels); their ENTRYPOINT, CMD and ENV run here in
    the torch-free worker image, with the demo model mounted where they expect it: the command line and settings
    must be accepted all the way to the point where the image's torch would take over."""
    entrypoint = json.loads(args_of(dockerfile, "ENTRYPOINT")[-1])
    command = json.loads(args_of(dockerfile, "CMD")[-1])
    env_args = [a for args in args_of(dockerfile, "ENV") for kv in args.split() if "=" in kv for a in ("-e", kv)]
    assert env_names(dockerfile) <= {kv.split("=")[0] for kv in env_args[1::2]}
    models = stack["compose"].env["REVIEWS_CI_MODELS"]
    run = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{models}:/models:ro", *env_args,
                          "--entrypoint", entrypoint[0], WORKER_IMAGE, *entrypoint[1:], *command],
                         capture_output=True, text=True, timeout=180, check=False)
    output = run.stdout + run.stderr
    print(f"\n{dockerfile}: {' '.join(entrypoint + command)} -> exit {run.returncode}: {output.strip()[-400:]}")
    assert run.returncode != 0, output
    assert needs in output, output
    assert "usage:" not in output and "invalid" not in output.lower(), output


def test_stop_sends_sigterm_and_every_consumer_drains_with_exit_0(stack: dict[str, Any]) -> None:
    compose: Compose = stack["compose"]
    consumers = compose.containers("consumer")
    assert len(consumers) == REPLICAS
    started = time.monotonic()
    compose("stop", "consumer", timeout_s=120)
    took = time.monotonic() - started
    for container in consumers:
        state = compose.state(container)
        outcome = (state["Status"], state["ExitCode"], state["OOMKilled"])
        assert outcome == ("exited", 0, False), compose.logs("consumer")
    assert took < 30, f"stopping took {took:.0f}s: at least one consumer waited for SIGKILL"
