"""The predict endpoint over the tiny random artifact: responses, the contract's 422s, limits, batching."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from reviews_mtl.contracts import Prediction
from reviews_mtl.model import load_predictor
from reviews_mtl.serving import ServeSettings, create_app


class CountingPredictor:
    """The real predictor, counting its calls; ``gate`` (when set) holds each call until released."""

    def __init__(self, model_dir: Path) -> None:
        self.inner = load_predictor(model_dir, runtime="onnx-int8", intra_op_threads=1)
        self.model_name = self.inner.model_name
        self.model_version = self.inner.model_version
        self.max_length = self.inner.max_length
        self.runtime = "onnx-int8"
        self.calls: list[int] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.calls.append(len(texts))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        return self.inner.predict(texts)


@pytest.fixture(scope="module")
def predictor(tiny_model_dir: Path) -> CountingPredictor:
    return CountingPredictor(tiny_model_dir)


@pytest.fixture()
def counting(predictor: CountingPredictor) -> CountingPredictor:
    predictor.calls.clear()
    predictor.gate = None
    predictor.entered.clear()
    return predictor


def review(i: int, **extra: Any) -> dict[str, Any]:
    return {"review_id": f"r{i}", "product_id": f"p{i % 3}", "text": f"Great kettle, boils fast #{i}", **extra}


def client(predictor: CountingPredictor, **limits: Any) -> TestClient:
    return TestClient(create_app(predictor, ServeSettings(**limits)))


def test_one_review_gets_one_prediction(counting: CountingPredictor) -> None:
    with client(counting) as http:
        response = http.post("/predict", json=review(1, title="Kettle", rating=5))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["review_id"] == "r1" and body["product_id"] == "p1"
    assert body["sentiment"]["label"] in ("negative", "neutral", "positive")
    assert set(body["sentiment"]["probabilities"]) == {"negative", "neutral", "positive"}
    assert 1.0 <= body["rating"] <= 5.0
    assert len(body["aspects"]) == 10 and set(body["aspects_detected"]) <= set(body["aspects"])
    assert (body["model_name"], body["model_version"], body["runtime"]) == (
        counting.model_name, counting.model_version, "onnx-int8")
    # The same text as the worker's: title. text, through the same predictor.
    expected = counting.inner.predict(["Kettle. Great kettle, boils fast #1"])[0]
    assert body["sentiment"]["label"] == expected.sentiment.label
    assert body["rating"] == pytest.approx(expected.rating, abs=1e-4)


def test_a_list_gets_a_list_in_order(counting: CountingPredictor) -> None:
    with client(counting) as http:
        response = http.post("/predict", json=[review(i) for i in range(5)])
    assert response.status_code == 200, response.text
    assert [r["review_id"] for r in response.json()] == [f"r{i}" for i in range(5)]
    assert counting.calls == [5]


@pytest.mark.parametrize(("payload", "index", "reason"), [
    (b"{not json", 0, "invalid_json"),
    (b"\xff\xfe", 0, "invalid_utf8"),
    (b"[]", 0, "empty_value"),
    (b'"just text"', 0, "not_an_object"),
    (b'{"review_id": "r1", "product_id": "p1"}', 0, "missing_text"),
    (b'{"review_id": "r1", "product_id": "p1", "text": "   "}', 0, "empty_text"),
    (b'{"review_id": 7, "product_id": "p1", "text": "ok"}', 0, "wrong_type"),
    (b'{"review_id": "r1", "product_id": "p1", "text": "ok", "schema_version": 9}', 0, "unknown_schema_version"),
    (b'[{"review_id": "r1", "product_id": "p1", "text": "ok"}, {"review_id": "r2", "text": "ok"}]', 1,
     "missing_product_id"),
    (b'{"review_id": "r1", "product_id": "p1", "text": "ok", "rating": 9}', 0, "invalid_field"),
])
def test_bad_input_is_422_with_the_contracts_reason(
    counting: CountingPredictor, payload: bytes, index: int, reason: str
) -> None:
    with client(counting) as http:
        response = http.post("/predict", content=payload, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    (item,) = response.json()["detail"]
    assert (item["index"], item["reason"]) == (index, reason)
    assert item["message"]
    assert counting.calls == []  # nothing reaches the model


def test_text_over_the_contract_limit_is_422(counting: CountingPredictor) -> None:
    with client(counting, max_body_bytes=100_000) as http:
        response = http.post("/predict", json=review(1, text="x" * 32_001))
    assert response.status_code == 422
    assert response.json()["detail"][0]["reason"] == "text_too_long"


def test_every_bad_item_is_named(counting: CountingPredictor) -> None:
    with client(counting) as http:
        response = http.post("/predict", json=[review(0), {"text": "x"}, review(2), {"review_id": "r3"}])
    assert response.status_code == 422
    assert [(d["index"], d["reason"]) for d in response.json()["detail"]] == [
        (1, "missing_review_id"), (3, "missing_product_id")]


def test_too_many_items_is_413(counting: CountingPredictor) -> None:
    with client(counting, max_items=3) as http:
        assert http.post("/predict", json=[review(i) for i in range(3)]).status_code == 200
        response = http.post("/predict", json=[review(i) for i in range(4)])
    assert response.status_code == 413
    assert "at most 3" in response.json()["detail"]


def test_body_over_the_limit_is_413(counting: CountingPredictor) -> None:
    with client(counting, max_body_bytes=2048) as http:
        response = http.post("/predict", json=review(1, text="y" * 3000))
        # Without a Content-Length the body is counted as it streams in.
        chunks = iter([b'{"review_id": "r1", "product_id": "p1", "text": "', b"z" * 3000, b'"}'])
        streamed = http.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "2048 bytes" in response.json()["detail"]
    assert streamed.status_code == 413
    assert counting.calls == []


def test_healthz_and_openapi(counting: CountingPredictor) -> None:
    with client(counting, max_items=7) as http:
        health = http.get("/healthz").json()
        spec = http.get("/openapi.json").json()
    assert health["status"] == "ok" and health["model_version"] == counting.model_version
    assert health["runtime"] == "onnx-int8" and health["queued"] == 0
    body_schema = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    single, many = body_schema["oneOf"]
    assert {"review_id", "product_id", "text"} <= set(single["required"])
    assert many["maxItems"] == 7
    assert {"413", "422", "429", "503"} <= set(spec["paths"]["/predict"]["post"]["responses"])


async def _post_all(app: Any, payloads: list[Any]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return list(await asyncio.gather(*(http.post("/predict", json=p) for p in payloads)))


def test_two_concurrent_callers_share_one_model_call(counting: CountingPredictor) -> None:
    app = create_app(counting, ServeSettings(max_wait_ms=200))
    first, second = asyncio.run(_post_all(app, [review(1), [review(2), review(3)]]))
    assert first.status_code == second.status_code == 200
    assert first.json()["review_id"] == "r1"
    assert [r["review_id"] for r in second.json()] == ["r2", "r3"]
    assert counting.calls == [3]  # one model call over both requests
    assert app.state.batcher.model_calls == 1


def test_a_batch_holds_at_most_max_batch_reviews(counting: CountingPredictor) -> None:
    app = create_app(counting, ServeSettings(max_wait_ms=200, max_batch=4))
    responses = asyncio.run(_post_all(app, [[review(2 * i), review(2 * i + 1)] for i in range(3)]))
    assert all(r.status_code == 200 for r in responses)
    assert sorted(counting.calls) == [2, 4]  # requests are never split


def test_a_full_queue_is_429_and_a_slow_model_503(counting: CountingPredictor) -> None:
    gate = counting.gate = threading.Event()
    app = create_app(counting, ServeSettings(max_wait_ms=0, max_queued=2, timeout_s=3))

    async def scenario() -> tuple[int, int, int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            busy = asyncio.create_task(http.post("/predict", json=review(1)))  # holds the model
            while not counting.entered.is_set():
                await asyncio.sleep(0.01)
            waiting = asyncio.create_task(http.post("/predict", json=[review(2), review(3)]))  # fills the queue
            while app.state.batcher.queued < 2:
                await asyncio.sleep(0.01)
            refused = await http.post("/predict", json=review(4))
            assert refused.headers["retry-after"] == "1"
            gate.set()
            return refused.status_code, (await busy).status_code, (await waiting).status_code, 0

    refused, busy, waiting, _ = asyncio.run(scenario())
    assert (refused, busy, waiting) == (429, 200, 200)

    slow_gate = counting.gate = threading.Event()
    counting.entered.clear()
    slow = create_app(counting, ServeSettings(max_wait_ms=0, timeout_s=0.2))
    (timed_out,) = asyncio.run(_post_all(slow, [review(5)]))
    slow_gate.set()
    assert timed_out.status_code == 503 and "no model call within" in timed_out.json()["detail"]


def test_a_failing_model_is_500_and_the_server_goes_on(counting: CountingPredictor) -> None:
    class Broken(CountingPredictor):
        def __init__(self, inner: CountingPredictor) -> None:
            self.__dict__.update(inner.__dict__)
            self.fail = True

        def predict(self, texts: Sequence[str]) -> list[Prediction]:
            if self.fail:
                self.fail = False
                raise RuntimeError("boom")
            return self.inner.predict(texts)

    with TestClient(create_app(Broken(counting))) as http:
        failed = http.post("/predict", json=review(1))
        ok = http.post("/predict", json=review(2))
    assert failed.status_code == 500 and "RuntimeError: boom" in failed.json()["detail"]
    assert ok.status_code == 200
