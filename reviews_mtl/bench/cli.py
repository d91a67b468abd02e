"""``reviews-mtl bench``: model-only, end-to-end and seed-setup speed in one run, against the targets in ``runner``."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, get_args

logger = logging.getLogger(__name__)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "bench", help="benchmark the model, the pipeline end to end, the seed's setup and the predict endpoint",
        description="Measure reviews/s model-only (runtimes × batch sizes), end to end through a real broker, "
        "Redis and the service's worker processes (throughput by replicas, latency at fixed loads), and the "
        "seed's DistilBERT setup as a service, the predict endpoint against in-process predict, and what one Redis "
        "absorbs through the aggregate script (speed, memory per review and product), on the same texts "
        "in the same run. By default it starts its own "
        "embedded broker (Tansu) and Redis and stops them at the end.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from reviews_mtl.bench.runner import PARTS
    from reviews_mtl.settings import RuntimeKind

    p.add_argument("--model", type=Path, default=os.environ.get("REVIEWS_BENCH_MODEL"),
                   help="model artifact directory (env REVIEWS_BENCH_MODEL; default: the cached demo model, "
                   "trained first if missing)")
    p.add_argument("--quick", action="store_true", help="a few minutes on 2 cores: fewer texts, sizes and loads")
    p.add_argument("--json", type=Path, help="write the result document here")
    p.add_argument("--plots", type=Path, help="PNG plots directory (default: beside --json)")
    p.add_argument("--data", type=Path, help="review data directory (default ../shared/data, else the sample)")
    p.add_argument("--broker", choices=["tansu", "apache"], default="tansu",
                   help="broker started for the run: embedded Tansu (default) or Apache Kafka from cached jars")
    p.add_argument("--bootstrap-servers", help="use this Kafka instead of starting one")
    p.add_argument("--redis-url", help="use this Redis instead of starting one")
    p.add_argument("--runtime", choices=get_args(RuntimeKind), default="auto",
                   help="the workers' runtime (default auto: torch on CUDA, else ONNX int8)")
    p.add_argument("--only", help=f"comma-separated parts to run (of {','.join(PARTS)})")
    p.add_argument("--skip", help="comma-separated parts to leave out")
    p.add_argument("--texts", type=int, help="review texts for model-only (default 2048, quick 512)")
    p.add_argument("--batch-sizes", type=_ints, help="model-only CPU batch sizes, e.g. 1,16,64,256")
    p.add_argument("--gpu-batch-sizes", type=_ints, help="model-only CUDA batch sizes (default 64,256,1024,2048)")
    p.add_argument("--batch-max-records", type=int, help="the workers' micro-batch size bound (default: the service's)")
    p.add_argument("--batch-max-wait-ms", type=int, help="the workers' micro-batch time bound (default: the service's)")
    p.add_argument("--seed-device", choices=["auto", "cpu", "cuda"], help="where the seed's model runs (default auto)")
    p.add_argument("--replicas", type=_ints, help="end-to-end replica counts (default 1,2)")
    p.add_argument("--loads", type=_floats, help="offered loads as shares of the max (default 0.25,0.5,0.75,0.9)")
    p.add_argument("--e2e-reviews", type=int, help="reviews pre-loaded for each throughput drain")
    p.add_argument("--load-duration", type=float, dest="load_duration_s", help="seconds per offered load")
    p.add_argument("--seed-reviews", type=int, help="reviews drained by the seed setup")
    p.add_argument("--phases-reviews", type=int, help="reviews drained by the in-process worker whose phases are timed")
    p.add_argument("--predict-api-concurrency", type=int,
                   help="predict-api: concurrent callers of the endpoint and of in-process predict (default 16)")
    p.add_argument("--predict-api-duration", type=float, dest="predict_api_duration_s",
                   help="predict-api: seconds per leg (default 10, quick 4)")
    p.add_argument("--redis-reviews", type=int,
                   help="redis: synthetic reviews through the aggregate script (default 1,000,000, quick 100,000)")
    p.add_argument("--redis-products", type=int, help="redis: products they spread over (default 100,000)")
    p.add_argument("--shadow-reviews", type=int,
                   help="shadow: reviews per drain without and with a shadow model (default 2000, quick 768)")
    p.add_argument("--batching", type=lambda t: tuple(x.strip() for x in t.split(",") if x.strip()),
                   help="e2e: measure the latency curve again with each of these micro-batch modes at the same "
                   "offered rates, e.g. adaptive,fixed (REVIEWS_CONSUMER_BATCH_ADAPTIVE)")
    p.add_argument("--batching-rounds", type=int, help="e2e: how many times to alternate the --batching modes")
    p.add_argument("--ceiling-reviews", type=int,
                   help="ceiling: reviews pre-loaded per drain (default 50,000, quick 10,000)")
    p.add_argument("--ceiling-rounds", type=int, help="ceiling: rounds of a plain and a timed drain (default 2)")
    p.add_argument("--ceiling-cost-us", type=float,
                   help="ceiling: the constant-cost predictor's model time per review, µs (default 0)")
    p.add_argument("--log-dir", type=Path, help="where worker logs go (default a temporary directory)")


def config_from_args(args: argparse.Namespace) -> Any:
    from reviews_mtl.bench.runner import PARTS, BenchConfig

    model_dir = args.model
    if model_dir is None:
        from reviews_mtl.training.demo_cache import ensure_demo_model

        logger.info("no --model: using the cached demo model (training it first if missing)")
        model_dir = ensure_demo_model(data_dir=args.data)
    parts = set(PARTS)
    if args.only:
        parts = {x.strip() for x in args.only.split(",")}
    if args.skip:
        parts -= {x.strip() for x in args.skip.split(",")}
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown bench part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    return BenchConfig.preset(
        Path(model_dir), quick=args.quick, data_dir=args.data, broker=args.broker,
        bootstrap_servers=args.bootstrap_servers, redis_url=args.redis_url, runtime=args.runtime,
        parts=tuple(p for p in PARTS if p in parts), batch_sizes=args.batch_sizes, texts=args.texts,
        gpu_batch_sizes=args.gpu_batch_sizes, batch_max_records=args.batch_max_records,
        batch_max_wait_ms=args.batch_max_wait_ms, seed_device=args.seed_device, replicas=args.replicas,
        loads=args.loads, e2e_reviews=args.e2e_reviews, load_duration_s=args.load_duration_s,
        seed_reviews=args.seed_reviews, phases_reviews=args.phases_reviews, log_dir=args.log_dir,
        predict_api_concurrency=args.predict_api_concurrency, predict_api_duration_s=args.predict_api_duration_s,
        redis_reviews=args.redis_reviews, redis_products=args.redis_products,
        shadow_reviews=args.shadow_reviews,
        batching=args.batching, batching_rounds=args.batching_rounds, ceiling_reviews=args.ceiling_reviews,
        ceiling_rounds=args.ceiling_rounds, ceiling_cost_us=args.ceiling_cost_us,
    )


def run(args: argparse.Namespace) -> int:
    from reviews_mtl.bench.report import render, write_json, write_plots
    from reviews_mtl.bench.runner import run_bench
    from reviews_mtl.model.artifact import validate_artifact

    config = config_from_args(args)
    validate_artifact(config.model_dir)
    result = run_bench(config)
    plots_dir = args.plots or (args.json.parent if args.json else None)
    if plots_dir is not None:
        result["plots"] = [str(p) for p in write_plots(result, plots_dir)]
    if args.json:
        write_json(result, args.json)
    print(render(result))
    if args.json:
        print(f"JSON: {args.json}")
    return 1 if result.get("errors") else 0
