"""The predict endpoint against calling ``predict`` in-process, at a fixed concurrency, one review per request.

Three legs over the same real reviews, each for ``duration_s``, in this order:

1. **in-process**: ``concurrency`` threads each calling ``predictor.predict([text])`` in a loop: what a program
   that embeds the model does without batching (the baseline the endpoint is compared with);
2. **in-process, batch B**: one thread calling ``predict`` over ``B = max_batch`` texts: the model's ceiling in
   reviews/s on this machine (each call's latency is the whole batch's);
3. **POST /predict**: a ``reviews-mtl serve-model`` process on loopback and ``concurrency`` asyncio clients
   (httpx, one connection each) in this process, each POSTing one review and waiting for the answer.

Latency is per request (or call): send → answer. The clients share the machine's cores with the server; on a
small machine that costs the endpoint some of its throughput, and the figures say so.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reviews_mtl.contracts import Review

logger = logging.getLogger(__name__)


def _row(path: str, latencies: Sequence[float], seconds: float, reviews_per_request: int,
         errors: dict[int, int] | None = None, model_calls: int | None = None) -> dict[str, Any]:
    lat = np.asarray(latencies, dtype=np.float64) * 1000
    n = len(lat)
    return {
        "path": path,
        "requests": n,
        "seconds": round(seconds, 3),
        "requests_per_s": round(n / seconds, 2) if seconds else 0.0,
        "reviews_per_s": round(n * reviews_per_request / seconds, 2) if seconds else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if n else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if n else None,
        "max_ms": round(float(lat.max()), 2) if n else None,
        "errors": dict(errors or {}),
        "mean_batch": round(n * reviews_per_request / model_calls, 2) if model_calls else None,
    }


def _in_process(predict: Any, texts: Sequence[str], concurrency: int, duration_s: float) -> tuple[list[float], float]:
    latencies: list[float] = []  # list.append is atomic under the GIL
    deadline = time.perf_counter() + duration_s

    def caller(k: int) -> None:
        i = k
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            predict([texts[i % len(texts)]])
            latencies.append(time.perf_counter() - t)
            i += concurrency

    started = time.perf_counter()
    threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - started


def _in_process_batched(predict: Any, texts: Sequence[str], batch: int, duration_s: float) -> tuple[list[float], float]:
    latencies: list[float] = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < duration_s:
        chunk = [texts[(i + j) % len(texts)] for j in range(batch)]
        t = time.perf_counter()
        predict(chunk)
        latencies.append(time.perf_counter() - t)
        i += batch
    return latencies, time.perf_counter() - started


async def _drive(url: str, bodies: Sequence[bytes], concurrency: int,
                 duration_s: float) -> tuple[list[float], float, dict[int, int], int]:
    """Latencies of the measured requests, the seconds, errors by status, and the server's model calls."""
    import httpx

    latencies: list[float] = []
    errors: Counter[int] = Counter()
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as http:
        await asyncio.gather(*(http.post("/predict", content=bodies[k % len(bodies)], headers=headers)
                               for k in range(concurrency)))  # open the connections; warm the server
        calls_before = int((await http.get("/healthz")).json()["model_calls"])
        deadline = time.perf_counter() + duration_s

        async def client(k: int) -> None:
            i = k
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                response = await http.post("/predict", content=bodies[i % len(bodies)], headers=headers)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors[response.status_code] += 1
                i += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(concurrency)))
        seconds = time.perf_counter() - started
        calls = int((await http.get("/healthz")).json()["model_calls"]) - calls_before
        return latencies, seconds, dict(errors), calls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(model_dir: Path, runtime: str, port: int, max_batch: int, max_wait_ms: float,
                  log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "reviews_mtl.cli", "serve-model", "--model", str(model_dir), "--port", str(port),
            "--runtime", runtime, "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms),
            "--max-queued", "100000"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as fh:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 120.0) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve-model exited with {process.returncode}: "
                               f"{log.read_text(errors='replace')[-500:]}")
        try:
            response = httpx.get(f"{url}/healthz", timeout=2.0)
            if response.status_code == 200:
                health: dict[str, Any] = response.json()
                return health
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"serve-model did not answer /healthz within {timeout_s:.0f}s")


def run_predict_api(model_dir: Path, reviews: Sequence[Review], *, runtime: str = "auto", concurrency: int = 16,
                    duration_s: float = 10.0, max_batch: int = 64, max_wait_ms: float = 5.0,
                    log_dir: Path) -> dict[str, Any]:
    """The three legs (module docstring); ``api_over_in_process`` is the endpoint's requests/s ÷ leg 1's."""
    from reviews_mtl.model import load_predictor
    from reviews_mtl.model.runtime import resolve_runtime

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would cost the clients' CPU
    chosen = resolve_runtime(runtime)
    texts = [r.model_text() for r in reviews]
    bodies = [r.to_bytes() for r in reviews]
    predictor = load_predictor(model_dir, runtime=chosen)
    predictor.predict(texts[:max_batch])  # first-call allocations are not throughput
    rows = []
    logger.info("predict-api: in-process, %d threads, %.0fs", concurrency, duration_s)
    lat, seconds = _in_process(predictor.predict, texts, concurrency, duration_s)
    rows.append(_row(f"in-process predict, 1 review per call, {concurrency} threads", lat, seconds, 1))
    logger.info("predict-api: in-process, batch %d, %.0fs", max_batch, duration_s)
    lat, seconds = _in_process_batched(predictor.predict, texts, max_batch, duration_s)
    rows.append(_row(f"in-process predict, batch {max_batch}, 1 thread", lat, seconds, max_batch, model_calls=len(lat)))
    del predictor

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = log_dir / "predict-api-server.log"
    process = _start_server(model_dir, chosen, port, max_batch, max_wait_ms, log)
    try:
        _wait_healthy(url, process, log)
        logger.info("predict-api: POST /predict, %d clients, %.0fs", concurrency, duration_s)
        lat, seconds, errors, calls = asyncio.run(_drive(url, bodies, concurrency, duration_s))
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    rows.append(_row(f"POST /predict (serve-model, ≤{max_wait_ms:g} ms wait, batch ≤{max_batch}), "
                     f"{concurrency} clients", lat, seconds, 1, errors, model_calls=calls))
    baseline, _ceiling, api = rows

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    return {
        "concurrency": concurrency, "duration_s": duration_s, "runtime": chosen, "max_batch": max_batch,
        "max_wait_ms": max_wait_ms, "rows": rows,
        "api_requests_per_s": api["requests_per_s"], "api_p99_ms": api["p99_ms"],
        "api_over_in_process": ratio(api["requests_per_s"], baseline["requests_per_s"]),
        "api_p99_over_in_process_p99": ratio(api["p99_ms"], baseline["p99_ms"]),
        "server_log": str(log),
    }
