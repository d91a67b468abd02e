"""Micro-batching across concurrent requests: callers await, one loop feeds the model.

A model call takes every request that arrived within ``max_wait_s`` of the oldest waiting one, up to
``max_batch`` reviews (a request is never split; one larger than ``max_batch`` goes alone). Requests that
arrive while the model runs wait for the next call, so under load batches fill without any wait. The
model runs on one worker thread (ONNX Runtime releases the GIL and uses every core itself), so the event
loop keeps accepting requests meanwhile. More than ``max_queued`` waiting reviews: :class:`QueueFull`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from reviews_mtl.contracts import Prediction

logger = logging.getLogger(__name__)

PredictFn = Callable[[Sequence[str]], list[Prediction]]


class QueueFull(Exception):
    """Too many reviews are waiting for the model: the caller should retry later (429)."""


class BatcherClosed(Exception):
    """The batcher is shutting down (503)."""


class PredictionFailed(Exception):
    """The model call that held this request raised (500)."""


@dataclass(slots=True)
class _Waiting:
    texts: Sequence[str]
    future: asyncio.Future[list[Prediction]]
    since: float


class RequestBatcher:
    def __init__(self, predict: PredictFn, *, max_batch: int = 64, max_wait_s: float = 0.005,
                 max_queued: int = 1024) -> None:
        if max_batch < 1 or max_queued < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_queued must be >= 1 and max_wait_s >= 0")
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queued = max_queued
        self._waiting: deque[_Waiting] = deque()
        self.queued = 0  # reviews waiting, not yet in a model call
        self.model_calls = 0
        self.predicted = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Predictions for ``texts``, in order, from a model call shared with concurrent callers."""
        if self._closed:
            raise BatcherClosed("the model server is shutting down")
        if self.queued + len(texts) > self.max_queued:
            raise QueueFull(f"{self.queued} reviews are waiting for the model (bound {self.max_queued})")
        loop = asyncio.get_running_loop()
        wakeup = self._start(loop)
        waiting = _Waiting(texts, loop.create_future(), loop.time())
        self._waiting.append(waiting)
        self.queued += len(texts)
        wakeup.set()
        return await waiting.future

    def _start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        # Started on first use in the caller's loop (an app may be driven by more than one loop in tests).
        if self._loop is not loop or self._task is None or self._task.done() or self._wakeup is None:
            self._loop = loop
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(self._wakeup), name="request-batcher")
        return self._wakeup

    async def _run(self, wakeup: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                wakeup.clear()
                await wakeup.wait()
            deadline = self._waiting[0].since + self.max_wait_s
            while self.queued < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wakeup.clear()
                try:
                    await asyncio.wait_for(wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = self._take()
            if batch:
                await self._call(loop, batch)

    def _take(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        size = 0
        while self._waiting:
            head = self._waiting[0]
            if batch and size + len(head.texts) > self.max_batch:
                break
            self._waiting.popleft()
            self.queued -= len(head.texts)
            if head.future.done():  # the caller gave up (timeout, disconnect)
                continue
            batch.append(head)
            size += len(head.texts)
        return batch

    async def _call(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting]) -> None:
        texts = [t for w in batch for t in w.texts]
        self.model_calls += 1
        try:
            predictions = await loop.run_in_executor(self._executor, self._predict, texts)
        except asyncio.CancelledError:
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(BatcherClosed("the model server is shutting down"))
            raise
        except Exception as exc:
            logger.exception("model call over %d reviews failed", len(texts))
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(PredictionFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.predicted += len(texts)
        start = 0
        for w in batch:
            if not w.future.done():
                w.future.set_result(predictions[start : start + len(w.texts)])
            start += len(w.texts)

    async def close(self) -> None:
        """Fail waiting requests with :class:`BatcherClosed`, stop the loop and the model thread."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            if self._loop is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        while self._waiting:
            w = self._waiting.popleft()
            if not w.future.done():
                w.future.set_exception(BatcherClosed("the model server is shutting down"))
        self.queued = 0
        self._executor.shutdown(wait=False, cancel_futures=True)
