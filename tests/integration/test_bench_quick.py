"""The whole bench path, tiny: tiny model, tiny counts, the real broker and Redis, real worker processes.

Checks the plumbing and the result document (required keys, positive numbers, plots); the figures of a
run this small mean nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reviews_mtl.bench.report import render, write_json, write_plots
from reviews_mtl.bench.runner import BenchConfig, run_bench
from reviews_mtl.settings import KafkaSettings

pytestmark = pytest.mark.integration

REQUIRED_POSITIVE = (
    "model_only_reviews_per_s",
    "e2e_reviews_per_s",
    "e2e_latency_p99_s",
    "seed_setup_reviews_per_s",
    "e2e_over_model_only",
    "e2e_over_seed",
)


@pytest.mark.timeout(300)
def test_bench_quick_end_to_end(
    kafka_settings: KafkaSettings, redis_url: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = BenchConfig.preset(
        tiny_model_dir,
        quick=True,
        bootstrap_servers=kafka_settings.bootstrap_servers,
        redis_url=redis_url,
        runtime="onnx-int8",
        texts=64,
        batch_sizes=(8, 32),
        model_max_s=0.3,
        reference_s=0.3,
        e2e_reviews=800,
        replicas=(1,),
        loads=(0.5,),
        load_duration_s=2.0,
        latency_warmup=32,
        seed_reviews=32,
        phases_reviews=200,
        shadow_reviews=200,
        ceiling_reviews=400,
        ceiling_redis_reviews=2000,
        log_dir=tmp_path / "logs",
    )
    result = run_bench(config)
    write_json(result, tmp_path / "bench.json")
    plots = write_plots(result, tmp_path)
    loaded = json.loads((tmp_path / "bench.json").read_text())

    assert not loaded["errors"], loaded["errors"]
    for key in REQUIRED_POSITIVE:
        assert isinstance(loaded[key], (int, float)) and loaded[key] > 0, (key, loaded[key])
    machine = loaded["machine"]
    assert machine["cores"] >= 1 and machine["cpu_model"]
    assert "gpu" in machine
    assert loaded["e2e"]["throughput"][0]["reviews"] == 800
    assert loaded["e2e"]["throughput"][0]["model_only_adjacent_per_s"] > 0
    assert [g["replicas"] for g in loaded["e2e"]["latency_by_replicas"]] == [1]
    latency = loaded["e2e"]["latency"][0]
    assert latency["reviews"] >= 20 and 0 < latency["p50_s"] <= latency["p99_s"]
    assert loaded["seed_setup"]["batch_size"] == 16 and loaded["seed_setup"]["padded_length"] == 128
    assert loaded["phases"]["reviews"] == 200
    shadow = loaded["shadow"]
    assert [(r["shadow"], r["reviews"]) for r in shadow["runs"]] == [(False, 200), (True, 200)]
    assert shadow["runs"][1]["shadow_reviews"] == 200 and shadow["shadow_s_per_batch"] > 0
    assert set(loaded["targets"]) >= {"e2e_over_model_only", "e2e_over_seed", "e2e_latency_p99_s_at_50pct"}
    assert {p.name for p in plots} == {"throughput_vs_batch.png", "latency_vs_load.png", "phases.png"}
    assert loaded["ceiling_reviews_per_s"] > 0
    assert "Headline" in render(result)


@pytest.mark.timeout(300)
def test_bench_ceiling_runs_the_service_with_the_constant_cost_predictor(
    kafka_settings: KafkaSettings, redis_url: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = BenchConfig.preset(
        tiny_model_dir, quick=True, bootstrap_servers=kafka_settings.bootstrap_servers, redis_url=redis_url,
        parts=("ceiling",), ceiling_reviews=600, ceiling_rounds=1, ceiling_redis_reviews=2000,
        log_dir=tmp_path / "logs",
    )
    result = run_bench(config)
    assert not result["errors"], result["errors"]
    ceiling = result["ceiling"]
    assert "bench-constant-cost" in ceiling["predictor"]
    assert result["ceiling_reviews_per_s"] > 0 and result["redis_script_reviews_per_s"] > 0
    phases = result["ceiling_phases_us_per_review"]
    assert set(phases) >= {"consume", "decode_validate", "tokenize", "build_serialize", "produce", "redis_script",
                           "commit"}
    assert phases["tokenize"] > 0 and phases["redis_script"] > 0 and phases["commit"] > 0
    assert result["model"]["max_length"] == ceiling["tokenizer_max_length"]
    cpu = ceiling["cpu_us_per_review"]
    assert cpu["worker_process"] >= cpu["worker_thread"] > 0 and cpu["redis"] > 0
    assert ceiling["worker_and_redis_reviews_per_2_cores_s"] > 0
    assert result["targets"]["ceiling_reviews_per_s"]["target"] == 10_000
    assert "Pipeline ceiling" in render(result)
