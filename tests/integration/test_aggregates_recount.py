"""After a real run (``reviews-mtl produce`` then ``reviews-mtl consume``), every ranking and every product's
aggregates, read through the CLI and the HTTP API, equal a recount of the enriched topic."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reviews_mtl.aggregates.api import create_app
from reviews_mtl.aggregates.keys import valid_rankings
from reviews_mtl.contracts import ASPECT_NAMES
from reviews_mtl.settings import AnalyticsSettings, KafkaSettings
from tests.integration.aggregates_data import RARE_PRODUCT, RealRun, real_run

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Recount:
    count: Counter[str] = field(default_factory=Counter)
    sentiment: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    rating_sum: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    aspects: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    complaints: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # Half-life weights, 2^((t - t_first) / half-life): their shares do not depend on the landmark.
    weight: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    negative_weight: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    complaint_weight: dict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float)))

    @classmethod
    def of(cls, records: list[dict[str, Any]]) -> Recount:
        rc = cls()
        half_life = AnalyticsSettings().half_life_s
        first = {r["product_id"]: int(r.get("timestamp") or r["processed_at"]) for r in reversed(records)}
        for r in records:
            w = 2 ** ((int(r.get("timestamp") or r["processed_at"]) - first[r["product_id"]]) / half_life)
            rc.weight[r["product_id"]] += w
            if r["sentiment"]["label"] == "negative":
                rc.negative_weight[r["product_id"]] += w
                for a in r["aspects_detected"]:
                    rc.complaint_weight[r["product_id"]][a] += w
            pid, label = r["product_id"], r["sentiment"]["label"]
            rc.count[pid] += 1
            rc.sentiment[pid][label] += 1
            rc.rating_sum[pid] += r["rating"]
            rc.aspects[pid].update(r["aspects_detected"])
            if label == "negative":
                rc.complaints[pid].update(r["aspects_detected"])
        return rc

    def ranking(self, by: str) -> dict[str, float]:
        """product -> value, for the products the ranking holds (an aspect ranking only those mentioning it)."""
        if by == "review_count":
            return {p: float(n) for p, n in self.count.items()}
        if by == "negative_share":
            return {p: self.sentiment[p]["negative"] / n for p, n in self.count.items()}
        if by == "positive_share":
            return {p: self.sentiment[p]["positive"] / n for p, n in self.count.items()}
        if by == "rating_mean":
            return {p: self.rating_sum[p] / n for p, n in self.count.items()}
        if by == "recent_negative_share":
            return {p: self.negative_weight[p] / self.weight[p] for p in self.count}
        kind, _, name = by.partition(":")
        if kind == "recent_complaints":
            return {p: c[name] / self.weight[p] for p, c in self.complaint_weight.items() if c[name] > 0}
        source = self.aspects if kind == "aspect" else self.complaints
        return {p: float(c[name]) for p, c in source.items() if c[name] > 0}


@pytest.fixture(scope="module")
def run(
    kafka_settings: KafkaSettings, redis_url: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> RealRun:
    return real_run(kafka_settings, redis_url, demo_model_dir, tmp_path_factory.mktemp("recount-run"))


@pytest.fixture(scope="module")
def recount(run: RealRun) -> Recount:
    ids = Counter(r["review_id"] for r in run.records)
    assert max(ids.values()) == 1, "the enriched topic holds duplicates"
    return Recount.of(run.records)


def _check_ranking(
    got: list[tuple[str, float, int]], expected: dict[str, float], rc: Recount, min_reviews: int, n: int
) -> None:
    eligible = {p: v for p, v in expected.items() if rc.count[p] >= min_reviews}
    values = sorted(eligible.values(), reverse=True)[:n]
    # Ties may come in any order, so compare the value sequence, then each product's own value.
    assert [v for _, v, _ in got] == pytest.approx(values, rel=1e-9)
    for product, value, count in got:
        assert value == pytest.approx(eligible[product], rel=1e-9), product
        assert count == rc.count[product]


@pytest.mark.parametrize("min_reviews", [3, 1])
def test_every_ranking_equals_recount_via_api(run: RealRun, recount: Recount, min_reviews: int) -> None:
    with TestClient(create_app(run.store)) as http:
        for by in valid_rankings():
            body = http.get("/api/top", params={"by": by, "n": 100, "min_reviews": min_reviews}).json()
            got = [(r["product_id"], r["value"], r["review_count"]) for r in body["items"]]
            _check_ranking(got, recount.ranking(by), recount, min_reviews, 100)
            if min_reviews == 3:
                assert RARE_PRODUCT not in {p for p, _, _ in got}, by


def _cli(run: RealRun, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reviews_mtl.cli", "aggregates", *args],
        cwd=REPO,
        env=run.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("by", ["negative_share", "rating_mean", "aspect:quality"])
def test_cli_top_equals_recount(run: RealRun, recount: Recount, by: str) -> None:
    result = _cli(run, "top", "--by", by, "-n", "5", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert all(set(row) == {"product_id", by, "value", "review_count"} for row in rows)
    got = [(row["product_id"], row[by], row["review_count"]) for row in rows]
    _check_ranking(got, recount.ranking(by), recount, 3, 5)


def test_cli_show_equals_recount(run: RealRun, recount: Recount) -> None:
    # The API test covers every product; here a few, since each CLI call is a fresh interpreter.
    for product in sorted(recount.count)[:3]:
        result = _cli(run, "show", product, "--json")
        assert result.returncode == 0, result.stderr
        body = json.loads(result.stdout)
        assert body["product_id"] == product
        assert body["review_count"] == recount.count[product]
        assert body["sentiment"] == {k: recount.sentiment[product][k] for k in ("negative", "neutral", "positive")}
        assert body["rating_mean"] == pytest.approx(recount.rating_sum[product] / recount.count[product], rel=1e-9)
        assert body["aspects"] == {a: recount.aspects[product][a] for a in ASPECT_NAMES}
    human = _cli(run, "show", RARE_PRODUCT)
    assert human.returncode == 0 and f"product {RARE_PRODUCT}: 2 reviews" in human.stdout


def test_cli_errors(run: RealRun) -> None:
    missing = _cli(run, "show", "no-such-product")
    assert missing.returncode == 1 and "no aggregates for product 'no-such-product'" in missing.stderr
    bad = _cli(run, "top", "--by", "aspect:colour")
    assert bad.returncode == 2 and "unknown ranking 'aspect:colour'" in bad.stderr
    down = subprocess.run(
        [sys.executable, "-m", "reviews_mtl.cli", "aggregates", "show", "x", "--redis-url", "redis://127.0.0.1:1/0"],
        cwd=REPO,
        env={**run.env, "REDIS_SOCKET_TIMEOUT_S": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 1 and "Redis unavailable" in down.stderr
