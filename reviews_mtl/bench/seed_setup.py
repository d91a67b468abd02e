"""The seed's design as a service, measured on the same broker, Redis and texts as ours.

What the seed would do: a DistilBERT-shaped encoder (6 layers, hidden 768, 12 heads, FFN 3072; random weights,
which cost the same time as trained ones) with the same three heads, PyTorch fp32 eager, batches of 16 padded
to 128 tokens; per batch: consume 16, decode, predict, produce the results, update Redis (one MULTI/EXEC
pipeline of HINCRBYs), flush the producer and commit the offsets synchronously. A plain, honest loop, run
as its own process (``python -m reviews_mtl.bench.seed_setup``) like our workers; :func:`measure_seed`
drains a pre-loaded topic with it and times first to last result exactly as the end-to-end bench does.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from reviews_mtl.bench.infra import Pipeline, Servers
from reviews_mtl.bench.texts import stream
from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS, Review, model_input

logger = logging.getLogger(__name__)

SEED_BATCH = 16
SEED_LENGTH = 128
DISTILBERT_CONFIG: dict[str, Any] = {
    "model_type": "distilbert",
    "vocab_size": 30522,
    "dim": 768,
    "n_layers": 6,
    "n_heads": 12,
    "hidden_dim": 3072,
    "max_position_embeddings": 512,
}


@dataclass(frozen=True)
class SeedResult:
    reviews: int
    seconds: float
    reviews_per_s: float
    startup_s: float
    device: str = "cpu"
    batch_size: int = SEED_BATCH
    padded_length: int = SEED_LENGTH
    encoder: str = "DistilBERT-shaped (6 layers, hidden 768, 12 heads, FFN 3072), random weights, fp32 eager"


def measure_seed(
    servers: Servers,
    reviews: Sequence[Review],
    count: int,
    tokenizer_path: Path,
    log_dir: Path,
    timeout_s: float = 900.0,
    device: str = "cpu",
) -> SeedResult:
    from reviews_mtl.bench.end_to_end import _rate

    pipe = Pipeline(servers, log_dir)
    sent = pipe.preload(stream(reviews, count, "seed-"))
    with pipe.tail() as tail:
        started = time.time()
        proc = pipe.start_process(
            [sys.executable, "-m", "reviews_mtl.bench.seed_setup", "--bootstrap-servers",
             servers.kafka.bootstrap_servers, "--redis-url", servers.redis_url, "--input", pipe.input,
             "--output", pipe.enriched, "--group", pipe.group, "--prefix", pipe.prefix,
             "--tokenizer", str(tokenizer_path), "--device", device],
            "seed",
        )
        try:
            tail.wait_for(sent, timeout_s, [proc], pipe.logs, desc="seed setup")
        finally:
            pipe.stop_workers()
        arrivals = tail.arrivals()
    rate, span = _rate(arrivals)
    logger.info("seed setup: %.1f reviews/s", rate)
    return SeedResult(reviews=sent, seconds=round(span, 3), reviews_per_s=round(rate, 2),
                      startup_s=round(min(a.seen_at for a in arrivals) - started, 2), device=device)


# -- the seed service itself (runs in its own process) ------------------------------------------------------------


def build_seed_model() -> Any:
    import torch

    from reviews_mtl.model.modeling import HeadConfig, MultiTaskReviewModel, encoder_from_config

    torch.manual_seed(0)
    encoder, hidden = encoder_from_config(dict(DISTILBERT_CONFIG))
    return MultiTaskReviewModel(encoder, hidden, HeadConfig()).eval()


def serve(args: argparse.Namespace) -> int:
    import redis
    import torch
    from tokenizers import Tokenizer

    from reviews_mtl.kafka import make_consumer, make_producer
    from reviews_mtl.settings import KafkaSettings

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    device = torch.device(args.device)
    model = build_seed_model().to(device)  # fp32 eager, on the GPU when the seed had one
    tokenizer = Tokenizer.from_file(args.tokenizer)
    pad_id = int(tokenizer.token_to_id("[PAD]") or 0)
    tokenizer.enable_truncation(max_length=SEED_LENGTH)
    tokenizer.enable_padding(length=SEED_LENGTH, pad_id=pad_id, pad_token="[PAD]")
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap_servers)
    consumer = make_consumer(kafka, args.group, **{"session.timeout.ms": 6000, "heartbeat.interval.ms": 2000})
    producer = make_producer(kafka)
    store = redis.Redis.from_url(args.redis_url)
    consumer.subscribe([args.input])
    logger.info("seed service started on %s", args.input)
    try:
        while not stopping:
            messages = [m for m in consumer.consume(num_messages=SEED_BATCH, timeout=1.0) if m.error() is None]
            if not messages:
                continue
            rows = []
            for m in messages:
                try:
                    rows.append(json.loads(m.value() or b""))
                except ValueError:
                    continue
            texts = [model_input(r.get("title"), r["text"]) for r in rows]
            encodings = tokenizer.encode_batch(texts)
            ids = torch.tensor([e.ids for e in encodings], dtype=torch.long).to(device)  # (16, 128)
            mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long).to(device)  # (16, 128)
            with torch.inference_mode():
                out = model(input_ids=ids, attention_mask=mask)
            sentiment = torch.softmax(out.sentiment_logits, dim=-1).tolist()
            ratings = out.rating.tolist()
            aspects = torch.sigmoid(out.aspect_logits).tolist()
            pipe = store.pipeline(transaction=True)
            for r, probs, rating, asp in zip(rows, sentiment, ratings, aspects, strict=True):
                label = SENTIMENT_LABELS[max(range(len(probs)), key=probs.__getitem__)]
                record = {
                    "review_id": r["review_id"], "product_id": r["product_id"], "timestamp": r.get("timestamp"),
                    "sentiment": {"label": label, "probabilities": dict(zip(SENTIMENT_LABELS, probs, strict=True))},
                    "rating": rating, "aspects": dict(zip(ASPECT_NAMES, asp, strict=True)),
                    "processed_at": time.time(),
                }
                producer.produce(args.output, key=str(r["product_id"]).encode(), value=json.dumps(record).encode())
                key = f"{args.prefix}:seed:product:{r['product_id']}"
                pipe.hincrby(key, "review_count", 1)
                pipe.hincrby(key, f"sentiment:{label}", 1)
                pipe.hincrbyfloat(key, "rating_sum", rating)
            pipe.execute()
            producer.flush(30)
            consumer.commit(asynchronous=False)
    finally:
        producer.flush(30)
        consumer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reviews_mtl.bench.seed_setup", description=__doc__)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--tokenizer", required=True, help="a BERT-uncased tokenizer.json (DistilBERT's vocabulary)")
    parser.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return serve(args)


if __name__ == "__main__":
    raise SystemExit(main())

