"""One benchmark run: configuration presets and the order of the parts."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

PARTS: tuple[str, ...] = ("model-only", "e2e", "seed", "phases", "predict-api", "redis", "shadow", "ceiling")

# The project's speed targets on 2 cores (README, "Measured speed"; issue 18 raised them for the full model).
TARGET_E2E_OVER_MODEL_ONLY = 0.9
TARGET_E2E_OVER_SEED = 30.0
TARGET_P99_AT_HALF_LOAD_S = 0.5
TARGET_P99_AT_90PCT_LOAD_S = 1.0
TARGET_WORKER_RSS_MB = 600.0
TARGET_GPU_E2E_PER_S = 20_000.0
# The pipeline without the model (constant-cost predictor), one worker process on 2 cores (issue 18).
TARGET_CEILING_PER_S = 10_000.0


@dataclass(frozen=True)
class BenchConfig:
    model_dir: Path
    quick: bool = False
    data_dir: Path | None = None
    broker: Literal["tansu", "apache"] = "tansu"
    bootstrap_servers: str | None = None
    redis_url: str | None = None
    runtime: str = "auto"  # the workers' runtime (auto: torch on CUDA, else ONNX int8)
    parts: tuple[str, ...] = PARTS
    texts: int = 2048
    batch_sizes: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256)
    gpu_batch_sizes: tuple[int, ...] = (64, 256, 1024, 2048)
    model_max_s: float = 9.0  # per runtime × batch size, split over the rounds
    model_rounds: int = 3
    reference_s: float = 8.0  # model-only in the worker's shape right before each drain (0 = off)
    e2e_reviews: int = 8000
    replicas: tuple[int, ...] = (1, 2)
    loads: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9)
    load_duration_s: float = 30.0
    latency_warmup: int = 512
    seed_reviews: int = 320
    phases_reviews: int = 4000
    cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    log_dir: Path | None = None
    batch_max_records: int | None = None  # the workers' micro-batch bounds (None: the service's defaults)
    batch_max_wait_ms: int | None = None
    seed_device: str = "auto"  # where the seed's model runs (auto: CUDA when present, as the seed would)
    predict_api_concurrency: int = 16  # concurrent callers of the predict endpoint and of in-process predict
    predict_api_duration_s: float = 10.0  # per leg (three legs)
    redis_reviews: int = 1_000_000  # synthetic reviews through the aggregate script (speed and memory)
    redis_products: int = 100_000
    shadow_reviews: int = 2000  # per drain; drains alternate without and with a shadow model
    shadow_rounds: int = 2
    batching: tuple[str, ...] = ()  # e2e latency again with each batching mode (adaptive, fixed) at the same rates
    batching_rounds: int = 1
    ceiling_reviews: int = 50_000  # pre-loaded reviews per ceiling drain
    ceiling_rounds: int = 2  # each round: a plain drain and a timed one
    ceiling_cost_us: float = 0.0  # the constant-cost predictor's model time per review
    ceiling_redis_reviews: int = 200_000  # the Redis script's own ceiling, measured beside it

    @classmethod
    def preset(cls, model_dir: Path, quick: bool = False, **overrides: Any) -> BenchConfig:
        base = cls(model_dir=Path(model_dir), quick=quick)
        if quick:
            # A few minutes on 2 cores: fewer texts and batch sizes, short drains and load steps.
            base = replace(base, texts=512, batch_sizes=(16, 64, 256), gpu_batch_sizes=(256, 1024),
                           model_max_s=3.0, model_rounds=1, reference_s=4.0, e2e_reviews=1500,
                           load_duration_s=8.0, latency_warmup=256,
                           seed_reviews=64, phases_reviews=1000, predict_api_duration_s=4.0,
                           redis_reviews=100_000, redis_products=10_000, shadow_reviews=768, shadow_rounds=1,
                           ceiling_reviews=10_000, ceiling_rounds=1, ceiling_redis_reviews=50_000)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _p99_at_half_load(latency: list[dict[str, Any]]) -> float | None:
    return _p99_at(latency, 0.5)


def _p99_at(latency: list[dict[str, Any]], load: float) -> float | None:
    """p99 of the offered load nearest ``load`` (None when none is within 0.05 of it)."""
    if not latency:
        return None
    row = min(latency, key=lambda r: abs(float(r["load"]) - load))
    return float(row["p99_s"]) if abs(float(row["load"]) - load) <= 0.05 else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, 3)


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run the selected parts and return the result document (what ``--json`` writes)."""
    from reviews_mtl.bench.machine import busy_processes, cuda_available, machine_info
    from reviews_mtl.bench.texts import load_bench_reviews

    started = time.time()
    machine = machine_info()
    machine["other_busy_processes_at_start"] = busy_processes()
    cuda = cuda_available()
    corpus = load_bench_reviews(config.data_dir, limit=max(config.texts, 4000))
    texts = corpus.texts[: config.texts]
    result: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "model": describe_model(config.model_dir),
        "texts": corpus.origin,
        "machine": machine,
    }
    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="reviews-bench-logs-"))
    result["logs"] = str(log_dir)

    errors: dict[str, str] = {}

    @contextlib.contextmanager
    def part(name: str) -> Iterator[None]:
        # A failed part is recorded and the others still run: one broken step must not lose the rest.
        try:
            yield
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            logger.exception("bench part %s failed", name)
            errors[name] = f"{type(exc).__name__}: {exc}"

    if "model-only" in config.parts:
        from reviews_mtl.bench.model_only import run_model_only

        with part("model-only"):
            result["model_only"] = run_model_only(
                config.model_dir, texts, batch_sizes=config.batch_sizes, gpu_batch_sizes=config.gpu_batch_sizes,
                max_s=config.model_max_s, cuda=cuda, rounds=config.model_rounds,
            )
            result["model_only_reviews_per_s"] = result["model_only"]["model_only_reviews_per_s"]

    if {"e2e", "seed", "phases", "shadow", "ceiling"} & set(config.parts):
        from reviews_mtl.bench.end_to_end import WorkerConfig, run_end_to_end
        from reviews_mtl.bench.infra import bench_servers

        worker = WorkerConfig(config.model_dir, config.runtime, config.cores, config.batch_max_records,
                              config.batch_max_wait_ms)
        with part("servers"), bench_servers(config.broker, bootstrap_servers=config.bootstrap_servers,
                                            redis_url=config.redis_url) as servers:
            result["servers"] = servers.description
            if "e2e" in config.parts:
                with part("e2e"):
                    result["e2e"] = run_end_to_end(
                        servers, worker, corpus.reviews, throughput_reviews=config.e2e_reviews,
                        replicas=config.replicas, loads=config.loads, load_duration_s=config.load_duration_s,
                        log_dir=log_dir, latency_warmup=config.latency_warmup, reference_s=config.reference_s,
                        batching_modes=config.batching, batching_rounds=config.batching_rounds,
                    )
                    result["e2e_reviews_per_s"] = result["e2e"]["e2e_reviews_per_s"]
                    result["e2e_latency_p99_s"] = _p99_at_half_load(result["e2e"]["latency"])
                    result["e2e_latency_p99_s_at_90pct"] = _p99_at(result["e2e"]["latency"], 0.9)
                    result["worker_peak_rss_mb"] = max(
                        (t["worker_peak_rss_mb"] or 0.0 for t in result["e2e"]["throughput"]), default=0.0) or None
                    result["e2e_over_model_only_adjacent"] = result["e2e"]["e2e_over_model_only_adjacent"]
            if "seed" in config.parts:
                from reviews_mtl.bench.seed_setup import measure_seed
                from reviews_mtl.model.artifact import TOKENIZER_FILE

                device = config.seed_device if config.seed_device != "auto" else ("cuda" if cuda else "cpu")
                with part("seed"):
                    seed = measure_seed(servers, corpus.reviews, config.seed_reviews,
                                        config.model_dir / TOKENIZER_FILE, log_dir, device=device)
                    result["seed_setup"] = asdict(seed)
                    result["seed_setup_reviews_per_s"] = seed.reviews_per_s
            if "phases" in config.parts:
                from reviews_mtl.bench.phases import profile_worker

                with part("phases"):
                    result["phases"] = profile_worker(servers, worker, corpus.reviews, config.phases_reviews,
                                                      log_dir)
            if "shadow" in config.parts:
                from reviews_mtl.bench.shadow import run_shadow

                with part("shadow"):
                    result["shadow"] = run_shadow(servers, worker, corpus.reviews, config.shadow_reviews, log_dir,
                                                  rounds=config.shadow_rounds)
            if "ceiling" in config.parts:
                from reviews_mtl.bench.ceiling import run_ceiling
                from reviews_mtl.bench.redis_script import measure_redis_script

                with part("ceiling"):
                    ceiling = run_ceiling(servers, worker, corpus.reviews, config.ceiling_reviews, log_dir,
                                          rounds=config.ceiling_rounds, cost_us_per_review=config.ceiling_cost_us)
                    result["ceiling"] = ceiling
                    result["ceiling_reviews_per_s"] = ceiling["ceiling_reviews_per_s"]
                    result["ceiling_phases_us_per_review"] = ceiling["ceiling_phases_us_per_review"]
                    # What one Redis absorbs through the script alone, on a Redis of its own, in the same run.
                    script = measure_redis_script(None, config.ceiling_redis_reviews,
                                                  min(config.redis_products, config.ceiling_redis_reviews // 10))
                    ceiling["redis_script"] = script
                    result["redis_script_reviews_per_s"] = script["reviews_per_s"]

    if "predict-api" in config.parts:
        from reviews_mtl.bench.predict_api import run_predict_api

        with part("predict-api"):
            result["predict_api"] = run_predict_api(
                config.model_dir, corpus.reviews[: max(config.texts, 256)], runtime=config.runtime,
                concurrency=config.predict_api_concurrency, duration_s=config.predict_api_duration_s,
                log_dir=log_dir,
            )

    if "redis" in config.parts:
        from reviews_mtl.bench.redis_script import measure_redis_script

        with part("redis"):
            result["redis_script"] = measure_redis_script(config.redis_url, config.redis_reviews,
                                                          config.redis_products)
            result["redis_script_reviews_per_s"] = result["redis_script"]["reviews_per_s"]

    result["e2e_over_model_only"] = _ratio(result.get("e2e_reviews_per_s"), result.get("model_only_reviews_per_s"))
    result["e2e_over_seed"] = _ratio(result.get("e2e_reviews_per_s"), result.get("seed_setup_reviews_per_s"))
    result["targets"] = targets(result, cuda)
    machine["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    machine["other_busy_processes_at_end"] = busy_processes()
    result["errors"] = errors
    result["elapsed_s"] = round(time.time() - started, 1)
    return result


def describe_model(model_dir: Path) -> dict[str, Any]:
    """Which model the run measured (the issue's targets are for the ``full`` preset)."""
    from reviews_mtl.model.artifact import ArtifactConfig

    try:
        config = ArtifactConfig.read(model_dir)
    except Exception as exc:  # the run still says what it was given
        return {"dir": str(model_dir), "error": str(exc)}
    return {"dir": str(model_dir), "name": config.model_name, "version": config.model_version,
            "preset": config.preset, "encoder": config.encoder,
            "max_length": config.max_length}


def targets(result: dict[str, Any], cuda: bool) -> dict[str, Any]:
    """Each speed target with the measured value and whether it is met (None: not measured)."""

    def check(value: float | None, target: float, higher_is_better: bool = True) -> dict[str, Any]:
        met = None if value is None else (value >= target if higher_is_better else value <= target)
        return {"value": value, "target": target, "met": met}

    out = {
        "e2e_over_model_only": check(result.get("e2e_over_model_only"), TARGET_E2E_OVER_MODEL_ONLY),
        "e2e_over_model_only_adjacent": check(result.get("e2e_over_model_only_adjacent"),
                                              TARGET_E2E_OVER_MODEL_ONLY),
        "e2e_over_seed": check(result.get("e2e_over_seed"), TARGET_E2E_OVER_SEED),
        "e2e_latency_p99_s_at_50pct": check(result.get("e2e_latency_p99_s"), TARGET_P99_AT_HALF_LOAD_S, False),
        "e2e_latency_p99_s_at_90pct": check(result.get("e2e_latency_p99_s_at_90pct"), TARGET_P99_AT_90PCT_LOAD_S,
                                            False),
        "worker_peak_rss_mb": check(result.get("worker_peak_rss_mb"), TARGET_WORKER_RSS_MB, False),
    }
    if result.get("ceiling_reviews_per_s") is not None:
        out["ceiling_reviews_per_s"] = check(result["ceiling_reviews_per_s"], TARGET_CEILING_PER_S)
    if cuda:
        out["gpu_e2e_reviews_per_s_one_worker"] = check(_one_worker_rate(result), TARGET_GPU_E2E_PER_S)
    return out


def _one_worker_rate(result: dict[str, Any]) -> float | None:
    for row in result.get("e2e", {}).get("throughput", []):
        if row["replicas"] == 1:
            return float(row["reviews_per_s"])
    return None
