"""The live page in headless Chromium, served by the real API over a Redis filled by a real run
(``reviews-mtl produce`` then ``reviews-mtl consume``). Structure, not pixels: a table with one row per
product, sentiment bars whose segments match the counts, a mean rating and the most mentioned aspects.

Skips ONLY when no Chromium is installed (Debian: ``apt-get install -y chromium``); CI installs it. The
screenshot goes to ``$REVIEWS_TEST_ARTIFACTS`` when set (CI uploads it), else to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from reviews_mtl.aggregates.api import create_app
from reviews_mtl.aggregates.prefixes import models_of
from reviews_mtl.aggregates.store import AggregateStore
from reviews_mtl.settings import KafkaSettings
from tests.integration.aggregates_data import RealRun, real_run, serving

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"),
]

# The page polls every 5 s by default; one long interval keeps a dump to exactly one render.
PAGE_QUERY = "?refresh=3600"


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.text_parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.text_parts) + "".join(c.text for c in self.children)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        out = []
        for c in self.children:
            if (tag is None or c.tag == tag) and (cls is None or cls in c.classes()):
                out.append(c)
            out.extend(c.find_all(tag, cls))
        return out

    def by_id(self, ident: str) -> Node | None:
        for n in self.find_all():
            if n.attrs.get("id") == ident:
                return n
        return None


class _TreeBuilder(HTMLParser):
    VOID: ClassVar[frozenset[str]] = frozenset({"meta", "link", "br", "img", "input", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#root", {}, None)
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in self.VOID:
            self.current = node

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.text_parts.append(data)


def _dom(url: str) -> Node:
    result = _chromium("--dump-dom", url)
    assert result.returncode == 0, result.stderr[-2000:]
    builder = _TreeBuilder()
    builder.feed(result.stdout)
    return builder.root


def _width_pct(style: str) -> float:
    for decl in style.split(";"):
        name, _, value = decl.partition(":")
        if name.strip() == "width":
            return float(value.strip().rstrip("%"))
    raise AssertionError(f"no width in {style!r}")


@pytest.fixture(scope="module")
def run(
    kafka_settings: KafkaSettings, redis_url: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> RealRun:
    return real_run(kafka_settings, redis_url, demo_model_dir, tmp_path_factory.mktemp("page-run"))


def test_page_renders_products_table(run: RealRun, tmp_path: Path) -> None:
    store = run.store
    with serving(create_app(store)) as base:
        root = _dom(base + "/" + PAGE_QUERY)

    status = root.by_id("status")
    assert status is not None and status.attrs.get("data-state") == "ok", status and status.text
    table = root.by_id("products")
    assert table is not None and table.tag == "table"
    headers = [th.text.strip() for th in table.find_all("th")]
    assert headers == ["Product", "Reviews", "Sentiment", "Mean rating", "Most mentioned aspects"]
    rows = [tr for tr in table.find_all("tr") if "data-product-id" in tr.attrs]

    expected = store.products(limit=50)
    assert [r.attrs["data-product-id"] for r in rows] == [p.product_id for p in expected]
    assert len(rows) == store.product_count() > 1
    for tr, agg in zip(rows, expected, strict=True):
        cells = tr.find_all("td")
        assert cells[0].text == agg.product_id
        assert int(cells[1].text) == agg.review_count
        segments = cells[2].find_all("span")
        assert [s.attrs["data-label"] for s in segments] == ["negative", "neutral", "positive"]
        assert [int(s.attrs["data-count"]) for s in segments] == [
            agg.sentiment[label] for label in ("negative", "neutral", "positive")
        ]
        assert sum(_width_pct(s.attrs["style"]) for s in segments) == pytest.approx(100, abs=0.05)
        assert agg.rating_mean is not None and cells[3].text.startswith(f"{agg.rating_mean:.2f}")
        shown = [s.attrs["data-aspect"] for s in cells[4].find_all("span", "aspect")]
        assert shown == [name for name, _ in agg.top_aspects(3)]
    summary = root.by_id("summary")
    assert summary is not None and summary.text.startswith(f"{store.product_count()} products")
    # The prefix served and the model that counted it (the worker notes its model in Redis).
    (model,) = models_of(store.client, store.prefix)
    caption = root.by_id("model")
    assert caption is not None and caption.text == f"prefix {store.prefix} · {model.name} {model.version}"


def test_page_screenshot(run: RealRun, tmp_path: Path) -> None:
    out_dir = Path(os.environ.get("REVIEWS_TEST_ARTIFACTS") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = out_dir / "aggregates-page.png"
    with serving(create_app(run.store)) as base:
        result = _chromium(f"--screenshot={shot}", "--window-size=1280,900", base + "/" + PAGE_QUERY)
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1280, 900)
    assert len(data) > 10_000  # a rendered table, not a blank page


def test_page_says_when_redis_is_down(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    with serving(create_app(AggregateStore(client))) as base:
        root = _dom(base + "/" + PAGE_QUERY)
    status = root.by_id("status")
    assert status is not None and status.attrs.get("data-state") == "error"
    assert "HTTP 503" in status.text


def _rows(root: Node) -> list[str]:
    table = root.by_id("products")
    assert table is not None
    return [tr.attrs["data-product-id"] for tr in table.find_all("tr") if "data-product-id" in tr.attrs]


def test_page_searches_by_prefix_and_sorts_by_any_ranking(run: RealRun) -> None:
    store = run.store
    with serving(create_app(store)) as base:
        found = _rows(_dom(base + "/" + PAGE_QUERY + "&q=prod-1"))
        by_negative = _rows(_dom(base + "/" + PAGE_QUERY + "&by=negative_share"))
        by_recent = _rows(_dom(base + "/" + PAGE_QUERY + "&by=recent_negative_share"))
    assert found == store.search("prod-1") == ["prod-1"]
    assert by_negative == [r.product_id for r in store.top("negative_share", n=50, min_reviews=1)]
    assert by_recent == [r.product_id for r in store.top("recent_negative_share", n=50, min_reviews=1)]
    assert len(by_negative) == store.product_count()


def test_product_view_shows_its_trend_alerts_and_last_reviews(run: RealRun, tmp_path: Path) -> None:
    store = run.store
    pid = "prod-1"
    alert = {"schema_version": 1, "product_id": pid, "kind": "negative_share", "aspect": None, "from": 0.2,
             "to": 0.7, "recent_reviews": 6.5, "half_life_s": 604800, "at": 1_790_000_000, "review_ids": ["r1"]}
    store.client.lpush(f"{store.prefix}:alerts:{pid}", json.dumps(alert))
    store.client.lpush(f"{store.prefix}:alerts", json.dumps(alert))
    out_dir = Path(os.environ.get("REVIEWS_TEST_ARTIFACTS") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    with serving(create_app(store)) as base:
        url = f"{base}/{PAGE_QUERY}#/product/{pid}"
        root = _dom(url)
        shot = _chromium(f"--screenshot={out_dir / 'product-page.png'}", "--window-size=1280,1100", url)
        listing = _dom(base + "/" + PAGE_QUERY)
    assert shot.returncode == 0, shot.stderr[-2000:]

    title = root.by_id("product-title")
    assert title is not None and title.text == pid
    chart = root.by_id("trend-chart")
    assert chart is not None
    days = [g for g in chart.find_all("g") if "day" in g.classes()]
    trend = store.trend(pid, days=30)
    assert [(g.attrs["data-day"], int(g.attrs["data-count"])) for g in days] == [
        (d.day, d.review_count) for d in trend.days]
    assert sum(int(g.attrs["data-count"]) for g in days) > 0
    bars = [(r.attrs["data-label"], int(r.attrs["data-count"])) for g in days for r in g.find_all("rect")]
    assert bars == [(label, d.sentiment[label]) for d in trend.days for label in ("negative", "neutral", "positive")]
    recent = root.by_id("recent")
    assert recent is not None
    assert [li.attrs["data-review-id"] for li in recent.find_all("li")] == [
        r["review_id"] for r in store.recent_reviews(pid)]
    product_alerts = root.by_id("product-alerts")
    assert product_alerts is not None and [li.attrs.get("data-kind") for li in product_alerts.find_all("li")] == [
        "negative_share"]
    latest = listing.by_id("alerts")
    assert latest is not None and [li.attrs.get("data-product-id") for li in latest.find_all("li")] == [pid]
