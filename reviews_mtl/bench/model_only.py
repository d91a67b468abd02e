"""Model-only speed: reviews/s by runtime and batch size on real texts, tokenization included.

A batch of ``B`` means what the worker does with ``B`` texts: tokenize them (truncation, length sort, dynamic
padding), run the model, return the arrays (``predict_arrays``). One extra row per runtime measures the
worker's own shape (a 256-record micro-batch split into sub-batches of the runtime's default 64), and
tokenization is also timed alone. Runtimes: ONNX Runtime int8 and fp32 always; PyTorch fp32 on CPU when
torch is importable; PyTorch fp16 and bf16 on CUDA when a GPU is present.
"""

from __future__ import annotations

import importlib.util
import logging
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

logger = logging.getLogger(__name__)

WORKER_CHUNK = 256  # the worker's default micro-batch (REVIEWS_CONSUMER_BATCH_MAX_RECORDS)
WORKER_SUB_BATCH = 64  # reviews_mtl.model.runtime.DEFAULT_BATCH_SIZE


class _Tokenizer(Protocol):
    batch_size: int

    def encode(self, texts: Sequence[str]) -> Sequence[object]: ...


class _Measurable(Protocol):
    tokenizer: _Tokenizer

    def predict_arrays(self, texts: Sequence[str]) -> object: ...


@dataclass(frozen=True)
class ModelOnlyRow:
    runtime: str
    device: str
    batch_size: int  # texts per call
    sub_batch: int  # rows per model run (== batch_size except for the worker-shape row)
    reviews: int
    seconds: float
    reviews_per_s: float  # the median over the rounds
    threads: int
    round_rates: tuple[float, ...] = ()  # one per round, in order: the spread shows how steady the machine was


@dataclass(frozen=True)
class TokenizeRow:
    batch_size: int
    texts: int
    seconds: float
    texts_per_s: float


def _chunks(texts: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(texts), size):
        yield texts[start : start + size]


def _timed_loop(
    run: Callable[[Sequence[str]], object], texts: Sequence[str], chunk: int, max_s: float, warmup: bool = True
) -> tuple[int, float]:
    """Run ``run`` over chunks of ``texts`` (cycling: a GPU finishes them fast) for ``max_s``, at least one chunk."""
    if warmup:
        run(texts[: min(chunk, 64)])  # first-call allocations and graph set-up are not throughput
    done = 0
    started = time.perf_counter()
    while True:
        for part in _chunks(texts, chunk):
            run(part)
            done += len(part)
            if time.perf_counter() - started >= max_s:
                return done, time.perf_counter() - started


def measure(
    predictor: _Measurable,
    texts: Sequence[str],
    *,
    runtime: str,
    device: str,
    batch_size: int,
    sub_batch: int | None = None,
    max_s: float = 5.0,
    threads: int = 0,
    warmup: bool = True,
) -> ModelOnlyRow:
    predictor.tokenizer.batch_size = sub_batch or batch_size
    done, seconds = _timed_loop(predictor.predict_arrays, texts, batch_size, max_s, warmup)
    return ModelOnlyRow(
        runtime=runtime,
        device=device,
        batch_size=batch_size,
        sub_batch=sub_batch or batch_size,
        reviews=done,
        seconds=round(seconds, 4),
        reviews_per_s=round(done / seconds, 1),
        threads=threads,
    )


def measure_tokenization(tokenizer: _Tokenizer, texts: Sequence[str], batch_size: int, max_s: float) -> TokenizeRow:
    tokenizer.batch_size = batch_size
    done, seconds = _timed_loop(tokenizer.encode, texts, batch_size, max_s)
    return TokenizeRow(batch_size, done, round(seconds, 4), round(done / seconds, 1))


def _torch_importable() -> bool:
    return importlib.util.find_spec("torch") is not None


def _predictors(model_dir: Path, threads: int, cuda: bool, include_torch_cpu: bool) -> Iterator[tuple[str, str, Any]]:
    """(runtime label, device, predictor) one at a time, so only one model is in memory."""
    from reviews_mtl.model.runtime import OnnxPredictor

    yield "onnx-int8", "cpu", OnnxPredictor(model_dir, quantized=True, intra_op_threads=threads)
    yield "onnx-fp32", "cpu", OnnxPredictor(model_dir, quantized=False, intra_op_threads=threads)
    if not _torch_importable():
        logger.info("torch not importable: no PyTorch rows")
        return
    import torch

    from reviews_mtl.model.runtime_torch import TorchPredictor

    if include_torch_cpu:
        yield "torch-fp32", "cpu", TorchPredictor(model_dir, threads=threads, device="cpu")
    if cuda:
        for name, dtype in (("torch-fp16", torch.float16), ("torch-bf16", torch.bfloat16)):
            if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
                continue
            predictor = TorchPredictor(model_dir, device="cuda")
            predictor.model = predictor.model.to(dtype)
            yield name, "cuda", predictor
            del predictor
            torch.cuda.empty_cache()


def run_model_only(
    model_dir: Path,
    texts: Sequence[str],
    *,
    batch_sizes: Sequence[int],
    gpu_batch_sizes: Sequence[int] = (64, 256, 1024, 2048),
    max_s: float = 5.0,
    threads: int = 0,
    cuda: bool = False,
    include_torch_cpu: bool = True,
    rounds: int = 1,
) -> dict[str, Any]:
    """Every runtime × batch size; returns rows, tokenization rows and the headline (ORT int8, best batch)."""
    rows: list[ModelOnlyRow] = []
    tokenize_rows: list[TokenizeRow] = []
    cpu_runtimes = 2 + (1 if include_torch_cpu and _torch_importable() else 0)
    jobs = rounds * (cpu_runtimes * (len(batch_sizes) + 1) + (2 * len(gpu_batch_sizes) if cuda else 0))
    bar = tqdm(total=jobs, desc="model only", unit="run", disable=None)
    for runtime, device, predictor in _predictors(model_dir, threads, cuda, include_torch_cpu):
        sizes = gpu_batch_sizes if device == "cuda" else batch_sizes
        if runtime == "onnx-int8":
            for b in sizes:
                tokenize_rows.append(measure_tokenization(predictor.tokenizer, texts, b, max_s / 3))
        # Rounds interleave the batch sizes, so a load change on a shared machine hits every size alike.
        shapes = [(b, b) for b in sizes] + ([(WORKER_CHUNK, WORKER_SUB_BATCH)] if device == "cpu" else [])
        samples: dict[tuple[int, int], list[ModelOnlyRow]] = {}
        for r in range(rounds):
            for b, sub in shapes:
                bar.set_postfix_str(f"{runtime} batch {b}/{sub} round {r + 1}")
                samples.setdefault((b, sub), []).append(measure(
                    predictor, texts, runtime=runtime, device=device, batch_size=b, sub_batch=sub,
                    max_s=max_s / rounds, threads=threads, warmup=r == 0,
                ))
                bar.update(1)
        for runs in samples.values():
            rates = tuple(x.reviews_per_s for x in runs)
            row = replace(runs[0], reviews=sum(x.reviews for x in runs),
                          seconds=round(sum(x.seconds for x in runs), 4),
                          reviews_per_s=round(statistics.median(rates), 1), round_rates=rates)
            rows.append(row)
            logger.info("model only %s batch %d/%d: %.1f reviews/s (rounds %s)", runtime, row.batch_size,
                        row.sub_batch, row.reviews_per_s, rates)
        del predictor
    bar.close()
    # The best of every int8 shape, the worker's own (256 → 64) included: the ratio is then the strictest.
    int8 = [r for r in rows if r.runtime == "onnx-int8"]
    best = max(int8, key=lambda r: r.reviews_per_s)
    return {
        "rows": [asdict(r) for r in rows],
        "tokenization": [asdict(t) for t in tokenize_rows],
        "best_onnx_int8": asdict(best),
        "model_only_reviews_per_s": best.reviews_per_s,
    }
