"""Where one worker's time goes: the service's own worker, built in-process, its phases timed.

The worker is assembled exactly as ``python -m consumer`` does (:func:`consumer.app.build_worker`), then each
step of its loop is wrapped with a timer on the instance (nothing in ``consumer/`` changes): the Kafka batch
wait, decoding, tokenizing, the model, building predictions and enriched records, JSON serialization, the Redis
reads and the per-batch script, and the produce + transaction commit. It drains a pre-loaded topic; the clock
starts at the first batch (start-up and the group join excluded) and stops when the last record is handled.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from reviews_mtl.bench.end_to_end import WorkerConfig
from reviews_mtl.bench.infra import BenchError, Pipeline, Servers
from reviews_mtl.bench.texts import stream
from reviews_mtl.contracts import Review

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class PhaseClock:
    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()

    def wrap(self, name: str, fn: F) -> F:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1

        return timed  # type: ignore[return-value]

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


@contextlib.contextmanager
def _patched(owner: Any, attribute: str, clock: PhaseClock, name: str) -> Iterator[None]:
    """Time a module function or class method for the duration of the run, then put it back."""
    original = getattr(owner, attribute)
    setattr(owner, attribute, clock.wrap(name, original))
    try:
        yield
    finally:
        setattr(owner, attribute, original)


def _instrument(process: Any, clock: PhaseClock) -> None:
    worker = process.worker
    worker.batcher.next_batch = clock.wrap("consume", worker.batcher.next_batch)
    worker._collect = clock.wrap("collect", worker._collect)
    worker.output.publish = clock.wrap("publish", worker.output.publish)
    processor = worker.processor
    processor.process = clock.wrap("process", processor.process)
    processor._predict = clock.wrap("predict_and_build", processor._predict)
    predictor = processor.predictor
    predictor.predict = clock.wrap("predict", predictor.predict)
    for name in ("tokenize", "run_encoded", "to_predictions"):
        if hasattr(predictor, name):
            setattr(predictor, name, clock.wrap(name, getattr(predictor, name)))
    store = processor.store
    for name in ("watermarks_for", "last_applied_batch", "apply_batch"):
        setattr(store, name, clock.wrap(f"redis_{name}", getattr(store, name)))


def _breakdown(s: dict[str, float], wall: float, records: int) -> list[dict[str, Any]]:
    predict_other = s["predict"] - s["tokenize"] - s["run_encoded"] - s["to_predictions"]
    process_other = (s["process"] - s["decode"] - s["redis_watermarks_for"] - s["redis_last_applied_batch"]
                     - s["predict_and_build"] - s["serialize"] - s["redis_apply_batch"])
    rows = [
        ("kafka: wait for / fetch a batch (consume)", s["consume"]),
        ("kafka: unpack messages", s["collect"] - s["consume"]),
        ("decode + validate input JSON (pydantic)", s["decode"]),
        ("tokenize (fast tokenizer, padding)", s["tokenize"]),
        ("model (ONNX Runtime / torch run)", s["run_encoded"]),
        ("predictions: arrays to Prediction objects", s["to_predictions"]),
        ("predict: other (scatter to input order)", predict_other),
        ("build EnrichedRecord objects", s["predict_and_build"] - s["predict"]),
        ("serialize enriched JSON", s["serialize"]),
        ("redis: watermarks + in-flight reads", s["redis_watermarks_for"] + s["redis_last_applied_batch"]),
        ("redis: per-batch Lua script", s["redis_apply_batch"]),
        ("processing: other (grouping, dead letters)", process_other),
        ("kafka: produce + send offsets + commit transaction", s["publish"]),
        ("worker: metrics and loop", wall - s["collect"] - s["process"] - s["publish"]),
    ]
    return [
        {"phase": name, "seconds": round(sec, 4), "share": round(sec / wall, 4) if wall else None,
         "us_per_review": round(1e6 * sec / records, 1) if records else None}
        for name, sec in rows
    ]


def profile_worker(
    servers: Servers,
    worker_config: WorkerConfig,
    reviews: Sequence[Review],
    count: int,
    log_dir: Path,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Drain ``count`` pre-loaded reviews with one in-process worker; per-phase seconds and shares."""
    import consumer.processing
    from consumer.app import build_worker
    from reviews_mtl.contracts import EnrichedRecord
    from reviews_mtl.settings import ConsumerSettings, RedisSettings, TopicSettings

    pipe = Pipeline(servers, log_dir)
    sent = pipe.preload(stream(reviews, count, "phases-"))
    settings = ConsumerSettings(
        model_dir=worker_config.model_dir, runtime=worker_config.runtime,  # type: ignore[arg-type]
        group_id=pipe.group, metrics_port=0, session_timeout_ms=6000,
        intra_op_threads=worker_config.threads(1),
    )
    bounds = {"batch_max_records": worker_config.batch_max_records,
              "batch_max_wait_ms": worker_config.batch_max_wait_ms}
    settings = settings.model_copy(update={k: v for k, v in bounds.items() if v is not None})
    redis_settings = RedisSettings(url=servers.redis_url, key_prefix=pipe.prefix)  # type: ignore[arg-type]
    topics = TopicSettings(input=pipe.input, enriched=pipe.enriched, dlq=pipe.dlq, alerts=pipe.alerts)
    process = build_worker(settings, servers.kafka, topics, redis_settings)
    worker = process.worker
    clock = PhaseClock()
    _instrument(process, clock)

    state: dict[str, float] = {"handled": 0, "first": 0.0, "last": 0.0}
    handle = worker._handle

    def timed_handle(messages: list[Any]) -> None:
        if state["handled"] == 0:
            clock.reset()  # start-up and the group join are not the worker's steady work
            state["first"] = time.perf_counter()
        handle(messages)
        state["handled"] += len(messages)
        state["last"] = time.perf_counter()
        if state["handled"] >= sent:
            worker.request_stop()

    setattr(worker, "_handle", timed_handle)  # noqa: B010 (an instance override, timed; the class is untouched)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    with (
        _patched(consumer.processing, "decode_review", clock, "decode"),
        _patched(EnrichedRecord, "to_bytes", clock, "serialize"),
    ):
        thread = threading.Thread(target=run, name="bench-phases-worker", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.5)
        if thread.is_alive():
            worker.request_stop()
            thread.join(30)
            raise BenchError(f"in-process worker handled {state['handled']} of {sent} in {timeout_s:.0f}s")
        snapshot = dict(clock.seconds)
    if errors:
        raise BenchError(f"in-process worker failed: {errors[0]!r}") from errors[0]
    wall = state["last"] - state["first"]
    seconds: defaultdict[str, float] = defaultdict(float, snapshot)
    handled = int(state["handled"])
    rows = _breakdown(seconds, wall, handled)
    logger.info("worker phases: %d reviews in %.2fs", handled, wall)
    return {
        "reviews": handled,
        "seconds": round(wall, 3),
        "reviews_per_s": round(handled / wall, 1) if wall > 0 else None,
        "batches": clock.calls["process"],
        "phases": rows,
        "note": "one in-process worker (consumer.app.build_worker) draining a pre-loaded topic; timers wrap its "
                "steps; the clock runs from the first batch to the last record",
    }
