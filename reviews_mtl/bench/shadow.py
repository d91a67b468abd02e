"""What a shadow model costs the live path: one in-process worker (``consumer.app.build_worker``) drains the same
number of pre-loaded reviews without and with ``--shadow-model``, in alternating rounds.

The shadow is the live model itself (the same artifact), so its cost equals live inference and the agreement is
total. Reported: the mean wall time of a live batch (``reviews_mtl_batch_seconds``) in each mode, the shadow's
own time per batch (``reviews_mtl_shadow_seconds``), how much of the added batch time the shadow explains
(``added_over_shadow``: about 1 means the live path is slower by the shadow's time and nothing else), and the rest of
a live batch once its inference and the shadow are taken out (``rest_s``: decode, Redis, Kafka), which a shadow must
leave as it is. On a shared machine the model times vary between drains; the rest is the steadier comparison.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reviews_mtl.bench.end_to_end import WorkerConfig
from reviews_mtl.bench.infra import Pipeline, Servers
from reviews_mtl.bench.texts import stream
from reviews_mtl.contracts import Review

logger = logging.getLogger(__name__)


class BenchError(RuntimeError):
    pass


def _mean(registry: Any, name: str) -> float | None:
    total = registry.get_sample_value(f"{name}_sum")
    count = registry.get_sample_value(f"{name}_count")
    return float(total) / float(count) if count else None


def drain(servers: Servers, worker_config: WorkerConfig, reviews: Sequence[Review], count: int, log_dir: Path,
          shadow_dir: Path | None, tag: str, timeout_s: float = 900.0) -> dict[str, Any]:
    """Drain ``count`` pre-loaded reviews with one in-process worker; its batch, inference and shadow times."""
    from consumer.app import build_worker
    from reviews_mtl.kafka import create_topic
    from reviews_mtl.settings import ConsumerSettings, RedisSettings, TopicSettings

    pipe = Pipeline(servers, log_dir)
    sent = pipe.preload(stream(reviews, count, tag))
    settings = ConsumerSettings(
        model_dir=worker_config.model_dir, runtime=worker_config.runtime,  # type: ignore[arg-type]
        group_id=pipe.group, metrics_port=0, session_timeout_ms=6000, intra_op_threads=worker_config.threads(1),
        shadow_model_dir=shadow_dir, model_check_interval_s=0,
    )
    bounds = {"batch_max_records": worker_config.batch_max_records,
              "batch_max_wait_ms": worker_config.batch_max_wait_ms}
    settings = settings.model_copy(update={k: v for k, v in bounds.items() if v is not None})
    topics = TopicSettings(input=pipe.input, enriched=pipe.enriched, dlq=pipe.dlq,
                           enriched_shadow=f"{pipe.name}.enriched.shadow")
    if shadow_dir is not None:
        create_topic(servers.kafka, topics.enriched_shadow, pipe.partitions)
    redis_settings = RedisSettings(url=servers.redis_url, key_prefix=pipe.prefix)  # type: ignore[arg-type]
    state = {"handled": 0, "first": 0.0, "last": 0.0}
    holder: list[Any] = []

    def stop_when_drained(handled: int) -> None:
        if handled and not state["handled"]:
            state["first"] = time.perf_counter()
        state["handled"] += handled
        if handled:
            state["last"] = time.perf_counter()
        if state["handled"] >= sent and holder:
            holder[0].worker.request_stop()

    process = build_worker(settings, servers.kafka, topics, redis_settings, between_batches=stop_when_drained)
    holder.append(process)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            process.worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"bench-shadow-{tag}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        process.worker.request_stop()
        thread.join(30)
        raise BenchError(f"in-process worker handled {state['handled']} of {sent} in {timeout_s:.0f}s")
    if errors:
        raise BenchError(f"in-process worker failed: {errors[0]!r}") from errors[0]
    registry = process.registry
    batches = registry.get_sample_value("reviews_mtl_batches_total") or 0.0
    batch_s = _mean(registry, "reviews_mtl_batch_seconds")
    inference_s = _mean(registry, "reviews_mtl_inference_seconds")
    shadow_s = _mean(registry, "reviews_mtl_shadow_seconds")
    return {
        "shadow": shadow_dir is not None,
        "reviews": int(state["handled"]),
        "batches": int(batches),
        "reviews_per_s": round(state["handled"] / (state["last"] - state["first"]), 1)
        if state["last"] > state["first"] else None,
        "batch_s": batch_s,
        "inference_s": inference_s,
        "shadow_s": shadow_s,
        # The rest of a live batch (decode, Redis, Kafka): what a shadow must not change.
        "rest_s": batch_s - inference_s - (shadow_s or 0.0) if batch_s is not None and inference_s is not None
        else None,
        "shadow_reviews": registry.get_sample_value("reviews_mtl_shadow_reviews_total"),
    }


def _avg(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def run_shadow(servers: Servers, worker_config: WorkerConfig, reviews: Sequence[Review], count: int,
               log_dir: Path, rounds: int = 2) -> dict[str, Any]:
    """``rounds`` × (without, with) drains of ``count`` reviews; means per mode and the added time explained."""
    runs: list[dict[str, Any]] = []
    for i in range(rounds):
        for shadow in (None, worker_config.model_dir):
            tag = f"shadow{i}{'on' if shadow else 'off'}-"
            row = drain(servers, worker_config, reviews, count, log_dir, shadow, tag)
            logger.info("shadow bench: %s", row)
            runs.append(row)
    off = [r for r in runs if not r["shadow"]]
    on = [r for r in runs if r["shadow"]]
    batch_off, batch_on, shadow_s = _avg(off, "batch_s"), _avg(on, "batch_s"), _avg(on, "shadow_s")
    added = batch_on - batch_off if batch_on is not None and batch_off is not None else None
    return {
        "runs": runs,
        "batch_s_without": batch_off,
        "batch_s_with": batch_on,
        "batch_s_added": added,
        "shadow_s_per_batch": shadow_s,
        "inference_s_per_batch": _avg(off, "inference_s"),
        "rest_s_without": _avg(off, "rest_s"),
        "rest_s_with": _avg(on, "rest_s"),
        "added_over_shadow": round(added / shadow_s, 3) if added is not None and shadow_s else None,
        "note": "one in-process worker drains the same number of pre-loaded reviews without and with a shadow "
                "model (the live artifact itself), alternating; means over the drains of each mode",
    }
