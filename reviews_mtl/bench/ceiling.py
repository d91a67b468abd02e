"""The pipeline's own ceiling: the real service with the model replaced by a constant-cost predictor.

On a GPU the model does 67,000–150,000 reviews/s, so everything around it bounds a worker: consuming, decoding and
validating, tokenizing, building and serializing records, producing, the Redis script, the transaction commit.
This part measures that bound without a GPU. One worker is built in this process exactly as ``python -m
consumer`` builds it (:func:`consumer.app.build_worker`, transactions on, the real broker and Redis), with
:class:`ConstantCostPredictor` in place of the model. That class is bench-only: ``consume`` cannot select it (its
runtime is not a ``RuntimeKind``). It tokenizes with the artifact's real tokenizer (length sort and padding
included, as a GPU worker must), waits a constant time per review (default none), and turns fixed model outputs
into predictions with the real code.

Each round drains a pre-loaded topic twice: plain (the headline reviews/s) and with every step timed (µs per
review per phase). Rounds alternate so a change of load on a shared machine hits both alike. The Redis
script's own ceiling (:mod:`.redis_script`) is measured in the same run.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reviews_mtl.bench.end_to_end import WorkerConfig
from reviews_mtl.bench.infra import Servers
from reviews_mtl.bench.phases import Drain, _breakdown, drain_in_process, pipeline_phases
from reviews_mtl.contracts import Review
from reviews_mtl.model.predictor import EncodedBatch, PredictorBase, RawOutputs

logger = logging.getLogger(__name__)

CONSTANT_COST_RUNTIME = "bench-constant-cost"

# Three fixed outputs (negative / neutral / positive, with and without aspects), chosen per review by its token
# count, so the Redis script sees every sentiment and some aspects, as with a real model.
_SENTIMENT = np.array([[0.82, 0.12, 0.06], [0.10, 0.72, 0.18], [0.03, 0.07, 0.90]], dtype=np.float32)
_RATING = np.array([1.7, 3.1, 4.6], dtype=np.float32)
_ASPECTS = np.array([[0.91, 0.05, 0.10, 0.02, 0.85, 0.04, 0.30, 0.02, 0.01, 0.20],
                     [0.05, 0.02, 0.03, 0.01, 0.04, 0.02, 0.05, 0.02, 0.01, 0.03],
                     [0.10, 0.88, 0.05, 0.02, 0.03, 0.12, 0.08, 0.40, 0.01, 0.93]], dtype=np.float32)


class ConstantCostPredictor(PredictorBase):
    """Bench only: the artifact's real tokenizer, then fixed outputs after ``cost_us_per_review`` (a sleep, as a
    GPU call releases the interpreter while the device works)."""

    runtime = CONSTANT_COST_RUNTIME

    def __init__(self, model_dir: Path, cost_us_per_review: float = 0.0, batch_size: int = 1024) -> None:
        super().__init__(model_dir, batch_size)
        self.model_name = CONSTANT_COST_RUNTIME
        self.cost_s = cost_us_per_review / 1e6

    def run_encoded(self, batch: EncodedBatch) -> RawOutputs:
        pick = batch.attention_mask.sum(axis=1) % len(_RATING)
        if self.cost_s:
            time.sleep(self.cost_s * len(pick))
        return RawOutputs(_SENTIMENT[pick], _RATING[pick], _ASPECTS[pick])


def _phase_rows(drains: Sequence[Drain]) -> tuple[list[dict[str, Any]], float, int]:
    seconds: defaultdict[str, float] = defaultdict(float)
    for d in drains:
        for name, sec in d.phase_seconds.items():
            seconds[name] += sec
    wall = sum(d.seconds for d in drains)
    reviews = sum(d.reviews for d in drains)
    return _breakdown(seconds, wall, reviews), wall, reviews


def _cpu_per_review(drains: Sequence[Drain]) -> dict[str, float | None]:
    reviews = sum(d.reviews for d in drains) or 1
    redis = [d.redis_cpu_s for d in drains]
    return {
        "worker_process": round(1e6 * sum(d.process_cpu_s for d in drains) / reviews, 1),
        "worker_thread": round(1e6 * sum(d.worker_thread_cpu_s for d in drains) / reviews, 1),
        "redis": round(1e6 * sum(x for x in redis if x is not None) / reviews, 1) if None not in redis else None,
    }


def run_ceiling(
    servers: Servers,
    worker: WorkerConfig,
    reviews: Sequence[Review],
    count: int,
    log_dir: Path,
    *,
    rounds: int = 2,
    cost_us_per_review: float = 0.0,
) -> dict[str, Any]:
    """``rounds`` × (a plain drain, a timed drain) of ``count`` reviews each; the median plain rate is the
    ceiling, the timed drains together give µs per review per phase."""
    from reviews_mtl.settings import ConsumerSettings

    batch = worker.batch_max_records or ConsumerSettings().batch_max_records
    plain: list[Drain] = []
    timed: list[Drain] = []
    for r in range(rounds):
        for instrument in (False, True):
            # A fresh predictor each drain: the timers wrap its methods on the instance.
            predictor = ConstantCostPredictor(worker.model_dir, cost_us_per_review, batch_size=batch)
            drain = drain_in_process(servers, worker, reviews, count, log_dir, predictor=predictor,
                                     instrument=instrument, tag=f"ceil{r}{'t' if instrument else 'p'}-")
            (timed if instrument else plain).append(drain)
            logger.info("ceiling round %d (%s): %d reviews in %.2fs, %s reviews/s, %d batches", r + 1,
                        "timed" if instrument else "plain", drain.reviews, drain.seconds, drain.reviews_per_s,
                        drain.batches)
    rows, wall, handled = _phase_rows(timed)
    rates = [d.reviews_per_s or 0.0 for d in plain]
    cpu = _cpu_per_review(plain)
    return {
        "predictor": f"{CONSTANT_COST_RUNTIME}: bench-only ConstantCostPredictor (the artifact's real tokenizer, "
                     f"fixed outputs, {cost_us_per_review:g} µs per review of model time)",
        "tokenizer_max_length": predictor.max_length,
        "cost_us_per_review": cost_us_per_review,
        "reviews_per_drain": count,
        "rounds": [{"plain_reviews_per_s": p.reviews_per_s, "timed_reviews_per_s": t.reviews_per_s,
                    "plain_batches": p.batches, "mean_batch": round(p.reviews / max(1, p.batches), 1)}
                   for p, t in zip(plain, timed, strict=True)],
        "ceiling_reviews_per_s": round(statistics.median(rates), 1),
        "timed_reviews_per_s": round(handled / wall, 1) if wall > 0 else None,
        "phases": rows,
        "ceiling_phases_us_per_review": pipeline_phases(rows),
        # CPU per review (plain drains), which the machine's load barely changes: the worker process (its thread and
        # librdkafka's), its Python thread alone, and Redis; with the broker's share left out, 2 cores ÷ their sum
        # bounds what one worker and its Redis could do on 2 cores of their own.
        "cpu_us_per_review": cpu,
        "worker_and_redis_reviews_per_2_cores_s": round(2e6 / (cpu["worker_process"] + (cpu["redis"] or 0.0)), 1)
        if cpu["worker_process"] else None,
        "bench_process_rss_mb": max((d.rss_mb or 0.0) for d in plain + timed) or None,
        "note": "one worker built in-process by consumer.app.build_worker (transactions on) on the bench's broker "
                "and Redis; rate = reviews handled ÷ time from the first batch to the last commit",
    }


def render_ceiling(c: dict[str, Any]) -> list[str]:
    lines = ["", f"Pipeline ceiling, model replaced by {c['predictor']}; tokenizer max_length "
                 f"{c['tokenizer_max_length']}; {c['reviews_per_drain']:,} reviews per drain",
             "  rounds (plain / timed reviews/s, mean batch): " + "; ".join(
                 f"{r['plain_reviews_per_s']:,.0f} / {r['timed_reviews_per_s']:,.0f} ({r['mean_batch']:.0f})"
                 for r in c["rounds"]),
             f"  ceiling: {c['ceiling_reviews_per_s']:,.0f} reviews/s end to end through one worker",
             "  CPU µs per review: " + ", ".join(f"{k} {v}" for k, v in (c.get("cpu_us_per_review") or {}).items())
             + f"; 2 cores ÷ (worker + Redis CPU): {c.get('worker_and_redis_reviews_per_2_cores_s') or '-'} reviews/s",
             f"  {'phase':<52} {'share':>6} {'µs/review':>10}"]
    for row in c["phases"]:
        lines.append(f"  {row['phase']:<52} {row['share']:>6.1%} {row['us_per_review']:>10.1f}")
    lines.append("  by named phase, µs per review: " + ", ".join(
        f"{k} {v:.1f}" for k, v in c["ceiling_phases_us_per_review"].items()))
    return lines
