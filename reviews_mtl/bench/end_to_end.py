"""End to end through a real broker, Redis and the service's own worker processes.

Throughput: a topic pre-loaded with N reviews is drained by ``replicas`` fresh workers; the rate is the
records that became visible after the first one, over the time from the first to the last (so worker
start-up, model loading and the group join are not counted, and neither is the first batch's own time).

Latency: a fresh pipeline is warmed up (group joined and settled, first batches done), then reviews are
offered at fixed shares of the measured maximum with the producer's token bucket, each stamped with
``timestamp`` = its send time. A review's latency is the time its enriched record became visible to a
``read_committed`` reader (after the worker's transaction committed) minus that timestamp: it includes the
producer's linger, the micro-batch wait, inference, the Redis script, the transaction commit and the reader's
fetch (≤ 10 ms). The publisher runs in this process on the same cores, as the tail reader does. It is one
long-lived producer, warmed up with the pipeline, because an upstream service keeps its producer: a fresh one
per step put its own start-up (about a second on Tansu) into the first records' latency, which was the whole
p99 at light load.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from reviews_mtl.bench.infra import Arrival, BenchError, Pipeline, Servers
from reviews_mtl.bench.texts import stream
from reviews_mtl.contracts import Review

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    model_dir: Path
    runtime: str = "auto"
    cores: int = 2
    batch_max_records: int | None = None  # None: the service's default
    batch_max_wait_ms: int | None = None
    # "adaptive" or "fixed" micro-batches (REVIEWS_CONSUMER_BATCH_ADAPTIVE); None: the service's default.
    batching: str | None = None

    def env(self) -> dict[str, str]:
        return {} if self.batching is None else {"REVIEWS_CONSUMER_BATCH_ADAPTIVE": str(self.batching == "adaptive")}

    @property
    def extra_args(self) -> tuple[str, ...]:
        args: tuple[str, ...] = ()
        if self.batch_max_records is not None:
            args += ("--batch-max-records", str(self.batch_max_records))
        if self.batch_max_wait_ms is not None:
            args += ("--batch-max-wait-ms", str(self.batch_max_wait_ms))
        return args

    def settings_overrides(self) -> dict[str, int]:
        """The same bounds as ``ConsumerSettings`` fields, for a worker built in-process."""
        bounds = {"batch_max_records": self.batch_max_records, "batch_max_wait_ms": self.batch_max_wait_ms}
        return {k: v for k, v in bounds.items() if v is not None}

    def threads(self, replicas: int) -> int:
        # One worker per core is the CPU deployment; threads are split so replicas do not oversubscribe.
        return max(1, self.cores // replicas)


@dataclass(frozen=True)
class ThroughputResult:
    replicas: int
    threads_per_worker: int
    reviews: int
    seconds: float  # first to last visible record
    reviews_per_s: float
    steady_reviews_per_s: float  # from the 20% point to the end: start-up and rebalances left out
    startup_s: float  # worker start to the first visible record
    # Model only, in the worker's shape, measured right before this drain on the same cores: on a shared
    # machine the load changes between the parts of a run, so the ratio is fairest against this figure.
    model_only_adjacent_per_s: float | None = None
    # The largest resident memory any worker process reached (VmHWM), MB.
    worker_peak_rss_mb: float | None = None


@dataclass(frozen=True)
class LatencyResult:
    load: float  # share of the measured maximum
    offered_per_s: float
    achieved_per_s: float  # what the publisher actually sent
    reviews: int
    p50_s: float
    p95_s: float
    p99_s: float
    max_s: float
    mean_s: float
    # Medians of the parts of a review's latency (what dominates it): review sent → model output ready
    # (producer, broker, micro-batch wait, decode, tokenize, model), → enriched message produced (records,
    # Redis script), → visible to read_committed readers (transaction commit, reader fetch).
    to_prediction_p50_s: float | None = None
    prediction_to_produce_p50_s: float | None = None
    produce_to_visible_p50_s: float | None = None


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident memory of a running process (Linux ``VmHWM``), MB; None where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _rate(arrivals: Sequence[Arrival], skip_share: float = 0.0) -> tuple[float, float]:
    """(records/s, seconds) over the arrivals after the first instant (or after the ``skip_share`` point)."""
    seen = sorted(a.seen_at for a in arrivals)
    if len(seen) < 2:
        return math.nan, 0.0
    start = seen[min(len(seen) - 1, int(len(seen) * skip_share))]
    later = sum(1 for s in seen if s > start)
    span = seen[-1] - start
    return (later / span if span > 0 else math.nan), span


@functools.lru_cache(maxsize=2)
def _reference_predictor(model_dir: Path, runtime: str, threads: int) -> Any:
    from reviews_mtl.model.runtime import load_predictor

    return load_predictor(model_dir, runtime=runtime, intra_op_threads=threads)


def adjacent_model_only(worker: WorkerConfig, texts: Sequence[str], max_s: float) -> float:
    """Model-only reviews/s in the worker's shape (micro-batch → default sub-batches), all cores, now."""
    from reviews_mtl.bench.model_only import WORKER_CHUNK, WORKER_SUB_BATCH, measure

    predictor = _reference_predictor(worker.model_dir, worker.runtime, worker.cores)
    row = measure(predictor, texts, runtime=worker.runtime, device="-",
                  batch_size=worker.batch_max_records or WORKER_CHUNK, sub_batch=WORKER_SUB_BATCH, max_s=max_s)
    return row.reviews_per_s


def measure_throughput(
    servers: Servers,
    worker: WorkerConfig,
    reviews: Sequence[Review],
    count: int,
    replicas: int,
    log_dir: Path,
    timeout_s: float = 600.0,
    reference_s: float = 0.0,
) -> ThroughputResult:
    pipe = Pipeline(servers, log_dir)
    sent = pipe.preload(stream(reviews, count, f"tp{replicas}r-"))
    reference = None
    if reference_s > 0:
        reference = adjacent_model_only(worker, [r.model_text() for r in reviews[:2048]], reference_s)
    with pipe.tail() as tail:
        started = time.time()
        workers = pipe.start_workers(worker.model_dir, replicas, threads=worker.threads(replicas),
                                     runtime=worker.runtime, extra=worker.extra_args, env=worker.env())
        try:
            tail.wait_for(sent, timeout_s, workers, pipe.logs, desc=f"drain, {replicas} replica(s)")
            peak_rss = max((peak_rss_mb(w.pid) or 0.0 for w in workers), default=0.0) or None
        finally:
            pipe.stop_workers()
        arrivals = tail.arrivals()
    rate, span = _rate(arrivals)
    if math.isnan(rate):
        raise BenchError(f"all {sent} records became visible at once: too few to time; pre-load several batches")
    steady, _ = _rate(arrivals, skip_share=0.2)
    result = ThroughputResult(
        replicas=replicas,
        threads_per_worker=worker.threads(replicas),
        reviews=sent,
        seconds=round(span, 3),
        reviews_per_s=round(rate, 1),
        steady_reviews_per_s=round(steady, 1),
        startup_s=round(min(a.seen_at for a in arrivals) - started, 2),
        model_only_adjacent_per_s=reference,
        worker_peak_rss_mb=peak_rss,
    )
    logger.info("end to end, %d replica(s): %.1f reviews/s (steady %.1f; model only just before: %s)",
                replicas, rate, steady, reference)
    return result


def _percentiles(latencies: Sequence[float]) -> dict[str, float]:
    values = np.asarray(latencies, dtype=np.float64)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_s": round(float(p50), 4), "p95_s": round(float(p95), 4), "p99_s": round(float(p99), 4),
            "max_s": round(float(values.max()), 4), "mean_s": round(float(values.mean()), 4)}


def _parts(arrivals: Sequence[Arrival]) -> dict[str, float | None]:
    def median(values: list[float]) -> float | None:
        return round(float(np.median(values)), 4) if values else None

    return {
        "to_prediction_p50_s": median([a.processed_at - a.event_time for a in arrivals
                                       if a.processed_at is not None and a.event_time is not None]),
        "prediction_to_produce_p50_s": median([a.produced_at - a.processed_at for a in arrivals
                                               if a.produced_at is not None and a.processed_at is not None]),
        "produce_to_visible_p50_s": median([a.seen_at - a.produced_at for a in arrivals
                                            if a.produced_at is not None]),
    }


def measure_latency(
    servers: Servers,
    worker: WorkerConfig,
    reviews: Sequence[Review],
    replicas: int,
    max_rate: float,
    loads: Sequence[float],
    duration_s: float,
    log_dir: Path,
    warmup: int = 512,
) -> list[LatencyResult]:
    if not max_rate > 0:
        raise BenchError(f"cannot offer shares of a maximum of {max_rate} reviews/s")
    pipe = Pipeline(servers, log_dir)
    results: list[LatencyResult] = []
    with pipe.tail() as tail, pipe.publisher() as publisher:
        workers = pipe.start_workers(worker.model_dir, replicas, threads=worker.threads(replicas),
                                     runtime=worker.runtime, extra=worker.extra_args, env=worker.env())
        try:
            # Warm-up, not measured: the group join, the model's first runs, the producers' start-up.
            sent = pipe.preload(stream(reviews, warmup, "warm-"), publisher)
            tail.wait_for(sent, 300, workers, pipe.logs, desc="latency warm-up")
            pipe.wait_until_balanced()
            for load in loads:
                rate = load * max_rate
                n = max(20, int(rate * duration_s))
                start = tail.count
                sent, seconds = pipe.publish_at_rate(stream(reviews, n, f"l{round(load * 100)}-"), rate, publisher)
                # Past the last send, the backlog must clear at the measured maximum (plus slack).
                tail.wait_for(start + sent, 60 + 3 * n / max_rate, workers, pipe.logs,
                              desc=f"latency at {load:.0%} load", start=start)
                arrivals = [a for a in tail.arrivals(start) if a.event_time is not None]
                pct = _percentiles([a.seen_at - a.event_time for a in arrivals if a.event_time is not None])
                parts = _parts(arrivals)
                result = LatencyResult(
                    load=load,
                    offered_per_s=round(rate, 1),
                    achieved_per_s=round(sent / seconds, 1) if seconds > 0 else math.nan,
                    reviews=len(arrivals),
                    p50_s=pct["p50_s"], p95_s=pct["p95_s"], p99_s=pct["p99_s"], max_s=pct["max_s"],
                    mean_s=pct["mean_s"],
                    to_prediction_p50_s=parts["to_prediction_p50_s"],
                    prediction_to_produce_p50_s=parts["prediction_to_produce_p50_s"],
                    produce_to_visible_p50_s=parts["produce_to_visible_p50_s"],
                )
                logger.info("latency at %.0f%% load (%.0f/s): p50 %.3fs p95 %.3fs p99 %.3fs", load * 100, rate,
                            result.p50_s, result.p95_s, result.p99_s)
                results.append(result)
        finally:
            pipe.stop_workers()
    return results


def run_end_to_end(
    servers: Servers,
    worker: WorkerConfig,
    reviews: Sequence[Review],
    *,
    throughput_reviews: int,
    replicas: Sequence[int],
    loads: Sequence[float],
    load_duration_s: float,
    log_dir: Path,
    latency_warmup: int = 512,
    reference_s: float = 0.0,
    batching_modes: Sequence[str] = (),
    batching_rounds: int = 1,
) -> dict[str, Any]:
    """Max throughput for each replica count, then latency at ``loads`` × each count's own maximum.

    The headline (``latency``, ``latency_replicas``) is the count with the best throughput: the one a
    deployment on these cores would run. With several replicas, keying by product can load one partition,
    and so one replica, more than the others; the per-count rows show what that costs.
    """
    throughput = [measure_throughput(servers, worker, reviews, throughput_reviews, r, log_dir,
                                     reference_s=reference_s) for r in replicas]
    best = max(throughput, key=lambda t: t.reviews_per_s)
    adjacent = best.model_only_adjacent_per_s
    by_replicas = []
    for t in throughput:
        rows = measure_latency(servers, worker, reviews, t.replicas, t.reviews_per_s, loads,
                               load_duration_s, log_dir, warmup=latency_warmup)
        by_replicas.append({"replicas": t.replicas, "max_reviews_per_s": t.reviews_per_s,
                            "latency": [asdict(x) for x in rows]})
    headline = next(x for x in by_replicas if x["replicas"] == best.replicas)
    # The same offered rates (shares of the best maximum) with each batching mode in turn, repeated: what adaptive
    # batches change, measured against fixed ones in the same run.
    by_batching = []
    for r in range(batching_rounds if batching_modes else 0):
        for mode in batching_modes:
            rows = measure_latency(servers, replace(worker, batching=mode), reviews, best.replicas,
                                   best.reviews_per_s, loads, load_duration_s, log_dir, warmup=latency_warmup)
            by_batching.append({"batching": mode, "round": r + 1, "replicas": best.replicas,
                                "max_reviews_per_s": best.reviews_per_s, "latency": [asdict(x) for x in rows]})
    return {
        "latency_by_batching": by_batching,
        "throughput": [asdict(t) for t in throughput],
        "best": asdict(best),
        "latency_replicas": best.replicas,
        "latency": headline["latency"],
        "latency_by_replicas": by_replicas,
        "e2e_reviews_per_s": best.reviews_per_s,
        "e2e_over_model_only_adjacent": round(best.reviews_per_s / adjacent, 3) if adjacent else None,
    }
