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
from dataclasses import dataclass
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
    output = worker.output
    output.publish = clock.wrap("publish", output.publish)
    output._produce_all = clock.wrap("produce", output._produce_all)
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
    # The script call itself (a round trip and the script's run in Redis), apart from building its arguments.
    store._apply = clock.wrap("redis_script_call", store._apply)


def _breakdown(s: dict[str, float], wall: float, records: int) -> list[dict[str, Any]]:
    predict_other = s["predict"] - s["tokenize"] - s["run_encoded"] - s["to_predictions"]
    # Serializing runs inside predict_and_build (each record right after its prediction).
    process_other = (s["process"] - s["decode"] - s["redis_watermarks_for"] - s["redis_last_applied_batch"]
                     - s["predict_and_build"] - s["redis_apply_batch"])
    # Drains instrumented before the script call was timed apart hold the whole apply_batch as the script.
    script_call = s["redis_script_call"] or s["redis_apply_batch"]
    rows = [
        ("kafka: wait for / fetch a batch (consume)", s["consume"]),
        ("kafka: unpack messages", s["collect"] - s["consume"]),
        ("decode + validate input JSON", s["decode"]),
        ("tokenize (fast tokenizer, padding)", s["tokenize"]),
        ("model (ONNX Runtime / torch run)", s["run_encoded"]),
        ("predictions: arrays to Prediction objects", s["to_predictions"]),
        ("predict: other (scatter to input order)", predict_other),
        ("build enriched records", s["predict_and_build"] - s["predict"] - s["serialize"]),
        ("serialize enriched JSON", s["serialize"]),
        ("redis: watermarks + in-flight reads", s["redis_watermarks_for"] + s["redis_last_applied_batch"]),
        ("redis: the script's arguments (client JSON)", s["redis_apply_batch"] - script_call),
        ("redis: per-batch Lua script (call + run)", script_call),
        ("processing: other (grouping, dead letters)", process_other),
        ("kafka: produce records", s["produce"]),
        ("kafka: send offsets + commit transaction", s["publish"] - s["produce"]),
        ("worker: metrics and loop", wall - s["collect"] - s["process"] - s["publish"]),
    ]
    return [
        {"phase": name, "seconds": round(sec, 4), "share": round(sec / wall, 4) if wall else None,
         "us_per_review": round(1e6 * sec / records, 1) if records else None}
        for name, sec in rows
    ]


# The phases the issue names, each a sum of timed steps (see _breakdown for the finer rows).
PIPELINE_PHASES: dict[str, tuple[str, ...]] = {
    "consume": ("kafka: wait for / fetch a batch (consume)", "kafka: unpack messages"),
    "decode_validate": ("decode + validate input JSON",),
    "tokenize": ("tokenize (fast tokenizer, padding)",),
    "model": ("model (ONNX Runtime / torch run)",),
    "build_serialize": ("predictions: arrays to Prediction objects", "predict: other (scatter to input order)",
                        "build enriched records", "serialize enriched JSON",
                        "processing: other (grouping, dead letters)"),
    "produce": ("kafka: produce records",),
    "redis_script": ("redis: watermarks + in-flight reads", "redis: the script's arguments (client JSON)",
                     "redis: per-batch Lua script (call + run)"),
    "commit": ("kafka: send offsets + commit transaction",),
    "loop_other": ("worker: metrics and loop",),
}


def pipeline_phases(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """µs per review of each named phase, from :func:`_breakdown`'s rows."""
    by_name = {r["phase"]: float(r["us_per_review"] or 0.0) for r in rows}
    return {phase: round(sum(by_name[n] for n in names), 1) for phase, names in PIPELINE_PHASES.items()}


@dataclass
class Drain:
    """What one in-process worker did with a pre-loaded topic: reviews handled, seconds from its first batch to
    its last record, batches, and (when instrumented) the seconds of each timed step."""

    reviews: int
    seconds: float
    batches: int
    phase_seconds: dict[str, float]
    rss_mb: float | None = None
    # CPU seconds over the same span, which a loaded machine does not inflate the way it does wall time: the whole
    # bench process (the worker thread and librdkafka's threads) and the worker's own thread, and Redis's server.
    process_cpu_s: float = 0.0
    worker_thread_cpu_s: float = 0.0
    redis_cpu_s: float | None = None

    @property
    def reviews_per_s(self) -> float | None:
        return round(self.reviews / self.seconds, 1) if self.seconds > 0 else None


def _redis_cpu_s(client: Any) -> float | None:
    """Redis's own CPU seconds so far (``INFO cpu``: its main thread and the others, user + system)."""
    try:
        cpu = client.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    except Exception:  # a figure for the report only: never fail the drain over it
        return None


def _rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def drain_in_process(
    servers: Servers,
    worker_config: WorkerConfig,
    reviews: Sequence[Review],
    count: int,
    log_dir: Path,
    *,
    predictor: Any = None,
    instrument: bool = True,
    tag: str = "phases-",
    timeout_s: float = 600.0,
) -> Drain:
    """Drain ``count`` pre-loaded reviews with one worker built in this process as ``python -m consumer`` builds
    it (:func:`consumer.app.build_worker`, transactions on), with ``predictor`` in place of the artifact's model
    when given. ``instrument``: time each step (a timer costs about a microsecond a call)."""
    import consumer.processing
    from consumer.app import build_worker
    from reviews_mtl.settings import ConsumerSettings, RedisSettings, TopicSettings

    pipe = Pipeline(servers, log_dir)
    sent = pipe.preload(stream(reviews, count, tag))
    settings = ConsumerSettings(
        model_dir=worker_config.model_dir, runtime=worker_config.runtime,  # type: ignore[arg-type]
        group_id=pipe.group, metrics_port=0, session_timeout_ms=6000,
        intra_op_threads=worker_config.threads(1),
    )
    settings = settings.model_copy(update=worker_config.settings_overrides())
    redis_settings = RedisSettings(url=servers.redis_url, key_prefix=pipe.prefix)  # type: ignore[arg-type]
    topics = TopicSettings(input=pipe.input, enriched=pipe.enriched, dlq=pipe.dlq, alerts=pipe.alerts)
    process = build_worker(settings, servers.kafka, topics, redis_settings, predictor=predictor)
    worker = process.worker
    clock = PhaseClock()
    if instrument:
        _instrument(process, clock)

    state: dict[str, Any] = {"handled": 0, "first": 0.0, "last": 0.0, "batches": 0, "cpu0": 0.0, "cpu1": 0.0,
                             "thread0": 0.0, "thread1": 0.0, "redis0": None}
    store_client = getattr(getattr(process.worker.processor, "store", None), "client", None)
    handle = worker._handle

    def timed_handle(messages: list[Any]) -> None:
        if state["handled"] == 0:
            clock.reset()  # start-up and the group join are not the worker's steady work
            state["first"] = time.perf_counter()
            state["cpu0"], state["thread0"] = time.process_time(), time.thread_time()
            state["redis0"] = _redis_cpu_s(store_client)
        handle(messages)
        state["handled"] += len(messages)
        state["batches"] += 1
        state["last"] = time.perf_counter()
        state["cpu1"], state["thread1"] = time.process_time(), time.thread_time()
        if state["handled"] >= sent:
            worker.request_stop()

    setattr(worker, "_handle", timed_handle)  # noqa: B010 (an instance override, timed; the class is untouched)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    patches = contextlib.ExitStack()
    with patches:
        if instrument:
            patches.enter_context(_patched(consumer.processing, "decode_review", clock, "decode"))
            if hasattr(consumer.processing, "record_bytes"):
                patches.enter_context(_patched(consumer.processing, "record_bytes", clock, "serialize"))
            else:  # a worker from before records were serialized once (comparing against an older commit)
                from reviews_mtl.contracts import EnrichedRecord

                patches.enter_context(_patched(EnrichedRecord, "to_bytes", clock, "serialize"))
        thread = threading.Thread(target=run, name="bench-in-process-worker", daemon=True)
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
    if process.http is not None:
        process.http.shutdown()
    redis1 = _redis_cpu_s(store_client)
    redis_cpu = redis1 - state["redis0"] if redis1 is not None and state.get("redis0") is not None else None
    return Drain(int(state["handled"]), state["last"] - state["first"], int(state["batches"]), snapshot, _rss_mb(),
                 process_cpu_s=state["cpu1"] - state["cpu0"], worker_thread_cpu_s=state["thread1"] - state["thread0"],
                 redis_cpu_s=redis_cpu)


def profile_worker(
    servers: Servers,
    worker_config: WorkerConfig,
    reviews: Sequence[Review],
    count: int,
    log_dir: Path,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Drain ``count`` pre-loaded reviews with one in-process worker; per-phase seconds and shares."""
    drain = drain_in_process(servers, worker_config, reviews, count, log_dir, timeout_s=timeout_s)
    rows = _breakdown(defaultdict(float, drain.phase_seconds), drain.seconds, drain.reviews)
    logger.info("worker phases: %d reviews in %.2fs", drain.reviews, drain.seconds)
    return {
        "reviews": drain.reviews,
        "seconds": round(drain.seconds, 3),
        "reviews_per_s": drain.reviews_per_s,
        "batches": drain.batches,
        "phases": rows,
        "note": "one in-process worker (consumer.app.build_worker) draining a pre-loaded topic; timers wrap its "
                "steps; the clock runs from the first batch to the last record",
    }
