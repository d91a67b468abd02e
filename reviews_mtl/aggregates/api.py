"""The HTTP read API over the aggregates, and the one live page it serves.

Start here: :func:`create_app` builds a read-only FastAPI app around an
:class:`~reviews_mtl.aggregates.store.AggregateStore`. Nothing here writes to Redis: the worker is the
only writer. Endpoints (OpenAPI at ``/openapi.json``, interactive docs at ``/docs``):

- ``GET /api/products?offset=&limit=&by=&min_reviews=&prefix=``  a page of products: by review count (default), by
  any ranking (``by``, with ``min_reviews``), or those whose id starts with ``prefix`` (in id order); ``limit`` <= 200
- ``GET /api/products/{product_id}``    one product's aggregates, 404 when unknown
- ``GET /api/products/{product_id}/trend?days=``  its per-day buckets (``days`` <= 366)
- ``GET /api/products/{product_id}/recent``       its last reviews, with their predictions
- ``GET /api/products/{product_id}/alerts``       its latest alerts
- ``GET /api/top?by=&n=&offset=&min_reviews=``  a ranking; 422 on an unknown ``by``
- ``GET /api/rankings``                 every accepted ``by``
- ``GET /api/alerts?n=``                the latest alerts of all products
- ``GET /api/quality?days=``            the model's live quality per model version and day
- ``GET /api/prefix``                   the key prefix served now and the models that wrote it
- ``GET /healthz``                      200 when Redis answers, else 503
- ``GET /``                             the page (``static/index.html``), which polls the API

Handlers are plain ``def``: the Redis client is synchronous, so FastAPI runs them in its thread pool. With
:class:`~reviews_mtl.aggregates.prefixes.Prefixes`, each request reads the prefix the pointer key names at its
start (``reviews-mtl aggregates promote`` switches it), and all of that request from it.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from reviews_mtl.aggregates.keys import parse_ranking, valid_rankings
from reviews_mtl.aggregates.prefixes import Prefixes, models_of
from reviews_mtl.aggregates.store import (
    AggregateStore,
    ProductAggregate,
    ProductTrend,
    QualityDay,
    RankedProduct,
)

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 200
MAX_MIN_REVIEWS = 100_000
MAX_TOP_N = 100
MAX_TOP_OFFSET = 9_000  # top() looks among the first 10,000 ranked products


class ProductPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[ProductAggregate]


class Ranking(BaseModel):
    by: str
    n: int
    offset: int = 0
    min_reviews: int
    items: list[RankedProduct]


def _unknown_ranking(exc: ValueError) -> HTTPException:
    # The same shape as FastAPI's own validation errors, so clients parse one format.
    return HTTPException(status_code=422, detail=[{"loc": ["query", "by"], "msg": str(exc), "type": "value_error"}])


class Health(BaseModel):
    status: str
    redis: bool


class ModelInfo(BaseModel):
    name: str
    version: str
    runtime: str


class ServedPrefix(BaseModel):
    prefix: str
    models: list[ModelInfo]


def _page_html() -> str:
    return resources.files("reviews_mtl.aggregates").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(store: AggregateStore, prefixes: Prefixes | None = None) -> FastAPI:
    """A read-only app serving ``store``'s aggregates, or, with ``prefixes``, those of the prefix it points at."""
    from reviews_mtl import __version__ as version

    app = FastAPI(
        title="reviews-mtl aggregates",
        version=str(version),
        description="Per-product review aggregates computed by the reviews-mtl worker (read-only).",
    )
    page = _page_html()
    stores: dict[str, AggregateStore] = {store.prefix: store}

    def reading() -> AggregateStore:
        """The store of the prefix readers read now: one pointer read per request."""
        if prefixes is None:
            return store
        prefix = prefixes.active()
        found = stores.get(prefix)
        if found is None:
            found = stores[prefix] = AggregateStore(store.client, prefix, store.analytics, store.clock)
        return found

    # A default, not an ``Annotated`` alias: annotations are strings here, resolved in the module, not this scope.
    current = Depends(reading)

    @app.exception_handler(redis.RedisError)
    def redis_unavailable(_request: Request, exc: redis.RedisError) -> JSONResponse:
        logger.warning("Redis error while serving a request: %s", exc)
        return JSONResponse(status_code=503, content={"detail": "aggregate store unavailable"})

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    def healthz() -> JSONResponse:
        ok = store.ping()
        return JSONResponse(
            status_code=200 if ok else 503, content={"status": "ok" if ok else "unavailable", "redis": ok}
        )

    @app.get("/api/products", response_model=ProductPage)
    def products(
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
        by: Annotated[str | None, Query(description="a ranking from /api/rankings", max_length=64)] = None,
        min_reviews: Annotated[int, Query(ge=0, le=MAX_MIN_REVIEWS)] = 1,
        prefix: Annotated[str | None, Query(description="product ids starting with this", max_length=256)] = None,
        store: AggregateStore = current,
    ) -> ProductPage:
        if prefix:
            items = store.products_by_id(store.search(prefix, offset=offset, limit=limit))
            return ProductPage(total=store.search_count(prefix), offset=offset, limit=limit, items=items)
        if by is not None and by != "review_count":
            try:
                ranked = store.top(by, n=limit, offset=offset, min_reviews=min_reviews)
            except ValueError as exc:
                raise _unknown_ranking(exc) from exc
            items = store.products_by_id([r.product_id for r in ranked])
            return ProductPage(total=store.product_count(), offset=offset, limit=limit, items=items)
        items = store.products(offset=offset, limit=limit)
        return ProductPage(total=store.product_count(), offset=offset, limit=limit, items=items)

    # Declared before /api/products/{id}: its ``:path`` would take ".../trend" as part of an id.
    @app.get("/api/products/{product_id:path}/trend", response_model=ProductTrend)
    def trend(product_id: Annotated[str, Path(min_length=1, max_length=256)],
              days: Annotated[int, Query(ge=1, le=366)] = 30, store: AggregateStore = current) -> ProductTrend:
        return store.trend(product_id, days=days)

    @app.get("/api/products/{product_id:path}/recent", response_model=list[dict[str, Any]])
    def recent(product_id: Annotated[str, Path(min_length=1, max_length=256)],
               store: AggregateStore = current) -> list[dict[str, Any]]:
        return store.recent_reviews(product_id)

    @app.get("/api/products/{product_id:path}/alerts", response_model=list[dict[str, Any]])
    def product_alerts(product_id: Annotated[str, Path(min_length=1, max_length=256)],
                       n: Annotated[int, Query(ge=1, le=100)] = 10,
                       store: AggregateStore = current) -> list[dict[str, Any]]:
        return store.alerts(product_id, n=n)

    # ``:path`` so ids with slashes work; ids like ``asin:B000123`` need nothing special.
    @app.get("/api/products/{product_id:path}", response_model=ProductAggregate, responses={404: {}})
    def product(product_id: Annotated[str, Path(min_length=1, max_length=256)],
                store: AggregateStore = current) -> ProductAggregate:
        agg = store.product(product_id)
        if agg is None:
            raise HTTPException(status_code=404, detail=f"no aggregates for product {product_id!r}")
        return agg

    @app.get("/api/top", response_model=Ranking)
    def top(
        by: Annotated[str, Query(description="a ranking from /api/rankings", max_length=64)],
        n: Annotated[int, Query(ge=1, le=MAX_TOP_N)] = 10,
        offset: Annotated[int, Query(ge=0, le=MAX_TOP_OFFSET)] = 0,
        min_reviews: Annotated[int, Query(ge=0, le=MAX_MIN_REVIEWS)] = 3,
        store: AggregateStore = current,
    ) -> Ranking:
        try:
            by = parse_ranking(by)
        except ValueError as exc:
            raise _unknown_ranking(exc) from exc
        return Ranking(by=by, n=n, offset=offset, min_reviews=min_reviews,
                       items=store.top(by, n=n, offset=offset, min_reviews=min_reviews))

    @app.get("/api/alerts", response_model=list[dict[str, Any]])
    def alerts(n: Annotated[int, Query(ge=1, le=100)] = 20,
               store: AggregateStore = current) -> list[dict[str, Any]]:
        return store.alerts(n=n)

    @app.get("/api/quality", response_model=list[QualityDay])
    def quality(days: Annotated[int, Query(ge=1, le=366)] = 30,
                store: AggregateStore = current) -> list[QualityDay]:
        return store.quality(days=days)

    @app.get("/api/prefix", response_model=ServedPrefix)
    def served_prefix(store: AggregateStore = current) -> ServedPrefix:
        models = [ModelInfo(name=m.name, version=m.version, runtime=m.runtime)
                  for m in models_of(store.client, store.prefix)]
        return ServedPrefix(prefix=store.prefix, models=models)

    @app.get("/api/rankings", response_model=list[str])
    def rankings() -> list[str]:
        return valid_rankings()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app
