"""The HTTP read API against a real Redis: responses, parameter validation and errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from reviews_mtl.aggregates.api import MAX_PAGE_SIZE, create_app
from reviews_mtl.aggregates.store import AggregateStore
from tests.integration.aggregates_data import PRODUCTS, Expected, fill

pytestmark = [pytest.mark.integration]


@pytest.fixture
def filled(redis_url: str) -> Iterator[tuple[TestClient, Expected]]:
    client = redis.Redis.from_url(redis_url)
    store, expected = fill(client)
    with TestClient(create_app(store)) as http:
        yield http, expected
    for key in client.scan_iter(f"{expected.prefix}:*"):
        client.delete(key)


def test_healthz(filled: tuple[TestClient, Expected]) -> None:
    http, _ = filled
    response = http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "redis": True}


def test_products_page_ordered_by_review_count(filled: tuple[TestClient, Expected]) -> None:
    http, _expected = filled
    body = http.get("/api/products").json()
    assert body["total"] == len(PRODUCTS)
    assert [p["product_id"] for p in body["items"]] == ["asin:B000GOOD", "asin:B000BAD", "kettle/v2", "lonely"]
    assert [p["review_count"] for p in body["items"]] == [8, 5, 4, 1]

    second = http.get("/api/products", params={"offset": 1, "limit": 2}).json()
    assert [p["product_id"] for p in second["items"]] == ["asin:B000BAD", "kettle/v2"]
    assert (second["offset"], second["limit"], second["total"]) == (1, 2, 4)
    assert http.get("/api/products", params={"offset": 10}).json()["items"] == []


@pytest.mark.parametrize("params", [{"limit": MAX_PAGE_SIZE + 1}, {"limit": 0}, {"offset": -1}, {"limit": "many"}])
def test_products_page_size_is_bounded(filled: tuple[TestClient, Expected], params: dict[str, str | int]) -> None:
    http, _ = filled
    response = http.get("/api/products", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "query"


@pytest.mark.parametrize("product_id", list(PRODUCTS))
def test_product_detail_equals_recount(filled: tuple[TestClient, Expected], product_id: str) -> None:
    http, expected = filled
    response = http.get(f"/api/products/{product_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["product_id"] == product_id
    assert body["review_count"] == expected.review_count[product_id]
    assert body["sentiment"] == {
        label: expected.sentiment[product_id][label] for label in ("negative", "neutral", "positive")
    }
    assert body["rating_mean"] == pytest.approx(expected.rating_mean[product_id])
    assert {a: c for a, c in body["aspects"].items() if c} == dict(expected.aspects[product_id])
    negative_mentions = {a: s["negative"] for a, s in body["aspect_sentiment"].items() if s["negative"]}
    assert negative_mentions == dict(expected.complaints[product_id])
    assert body["first_seen"] <= body["last_seen"]


def test_unknown_product_is_404(filled: tuple[TestClient, Expected]) -> None:
    http, _ = filled
    response = http.get("/api/products/asin:NOPE")
    assert response.status_code == 404
    assert "asin:NOPE" in response.json()["detail"]


def test_top_rankings_respect_min_reviews(filled: tuple[TestClient, Expected]) -> None:
    http, expected = filled
    body = http.get("/api/top", params={"by": "negative_share", "n": 10, "min_reviews": 3}).json()
    assert body["by"] == "negative_share"
    ids = [r["product_id"] for r in body["items"]]
    assert ids == ["asin:B000BAD", "kettle/v2", "asin:B000GOOD"]  # "lonely" (1 review) left out
    assert body["items"][0]["value"] == pytest.approx(expected.share("asin:B000BAD", "negative"))
    assert body["items"][0]["review_count"] == 5

    with_lonely = http.get("/api/top", params={"by": "negative_share", "min_reviews": 1}).json()
    assert with_lonely["items"][0]["product_id"] == "lonely"

    counts = http.get("/api/top", params={"by": "review_count", "n": 2}).json()["items"]
    assert [(r["product_id"], r["value"]) for r in counts] == [("asin:B000GOOD", 8), ("asin:B000BAD", 5)]

    rating = http.get("/api/top", params={"by": "rating_mean", "n": 1}).json()["items"][0]
    assert rating["product_id"] == "asin:B000GOOD"
    assert rating["value"] == pytest.approx(expected.rating_mean["asin:B000GOOD"])


def test_top_by_aspect_and_complaints(filled: tuple[TestClient, Expected]) -> None:
    http, _ = filled
    shipping = http.get("/api/top", params={"by": "aspect:shipping", "min_reviews": 0}).json()["items"]
    assert [(r["product_id"], r["value"]) for r in shipping] == [("kettle/v2", 4)]
    quality = http.get("/api/top", params={"by": "complaints:quality", "min_reviews": 0}).json()["items"]
    assert [(r["product_id"], r["value"]) for r in quality] == [("asin:B000BAD", 4)]


@pytest.mark.parametrize(
    "params",
    [
        {"by": "loudness"},
        {"by": "aspect:colour"},
        {"by": "complaints:"},
        {},
        {"by": "review_count", "n": 0},
        {"by": "review_count", "n": 101},
        {"by": "review_count", "min_reviews": -1},
    ],
)
def test_top_rejects_bad_parameters(filled: tuple[TestClient, Expected], params: dict[str, str | int]) -> None:
    http, _ = filled
    response = http.get("/api/top", params=params)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail[0]["loc"][0] == "query"


def test_bad_ranking_message_names_the_choices(filled: tuple[TestClient, Expected]) -> None:
    http, _ = filled
    msg = http.get("/api/top", params={"by": "loudness"}).json()["detail"][0]["msg"]
    assert "negative_share" in msg and "aspect:NAME" in msg and "quality" in msg


def test_rankings_list(filled: tuple[TestClient, Expected]) -> None:
    http, _ = filled
    rankings = http.get("/api/rankings").json()
    assert {
        "review_count",
        "negative_share",
        "positive_share",
        "rating_mean",
        "aspect:price",
        "complaints:customer_service",
    } <= set(rankings)


def test_read_only(filled: tuple[TestClient, Expected]) -> None:
    http, _ = filled
    assert http.post("/api/products", json={}).status_code == 405
    assert http.delete("/api/products/lonely").status_code == 405
    assert http.get("/api/products/lonely").status_code == 200


def test_openapi_and_page_are_served(filled: tuple[TestClient, Expected]) -> None:
    http, _ = filled
    spec = http.get("/openapi.json").json()
    assert {"/api/products", "/api/products/{product_id}", "/api/top", "/healthz"} <= set(spec["paths"])
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<table id="products">' in page.text


def test_redis_down_is_503_not_500() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # No client-side retries: the default backoff would only make this test slow.
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    store = AggregateStore(client)
    with TestClient(create_app(store)) as http:
        health = http.get("/healthz")
        assert health.status_code == 503 and health.json() == {"status": "unavailable", "redis": False}
        products = http.get("/api/products")
        assert products.status_code == 503
        assert products.json() == {"detail": "aggregate store unavailable"}
        assert http.get("/api/products/x").status_code == 503
