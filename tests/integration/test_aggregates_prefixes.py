"""Key prefixes on a real Redis: ``aggregates promote`` switches the API and the CLI in one write, ``prefixes``
lists them with their models and sizes, ``drop`` deletes an old one and refuses the active one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from fastapi.testclient import TestClient

from reviews_mtl.aggregates.api import create_app
from reviews_mtl.aggregates.prefixes import PrefixError, Prefixes, declare_start, record_model
from reviews_mtl.aggregates.store import AggregateStore, AppliedRecord, PartitionBatch
from reviews_mtl.cli import main
from tests.integration.aggregates_data import fill

pytestmark = pytest.mark.integration

NEW_ONLY = "only-in-new"


@dataclass
class Two:
    client: redis.Redis
    old: AggregateStore
    new: AggregateStore
    prefixes: Prefixes


@pytest.fixture
def two(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Two]:
    client = redis.Redis.from_url(redis_url)
    old, _ = fill(client)
    new, _ = fill(client)
    # The re-scored history differs: one more product under the new prefix.
    enriched = json.dumps({"review_id": "n1", "product_id": NEW_ONLY}).encode()
    new.apply_batch([PartitionBatch("reviews", 2, records=[AppliedRecord(0, "n1", NEW_ONLY, "positive", 5.0, ["price"],
                                                                 1.7e9, enriched)])])
    record_model(client, old.prefix, "reviews-mtl", "A", "onnx-int8", now=1.0)
    record_model(client, new.prefix, "reviews-mtl", "B", "onnx-int8", now=2.0)
    pointer = f"test-pointer-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_KEY_PREFIX", old.prefix)
    monkeypatch.setenv("REDIS_ACTIVE_PREFIX_KEY", pointer)
    monkeypatch.setenv("REDIS_URL", redis_url)
    yield Two(client, old, new, Prefixes(client, old.prefix, pointer))
    client.delete(pointer)
    for prefix in (old.prefix, new.prefix):
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["aggregates", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_promote_switches_the_api_and_the_cli_and_rolls_back(two: Two, capsys: pytest.CaptureFixture[str]) -> None:
    api = TestClient(create_app(AggregateStore(two.client, two.old.prefix), two.prefixes))
    assert api.get(f"/api/products/{NEW_ONLY}").status_code == 404
    assert api.get("/api/prefix").json() == {"prefix": two.old.prefix, "models": [
        {"name": "reviews-mtl", "version": "A", "runtime": "onnx-int8"}]}
    assert cli(capsys, "show", NEW_ONLY)[0] == 1

    code, out, err = cli(capsys, "promote", two.new.prefix)
    assert code == 0, err
    assert out.strip() == (f"readers now read prefix {two.new.prefix} (was {two.old.prefix}); roll back with "
                           f"`reviews-mtl aggregates promote {two.old.prefix}`")
    assert api.get(f"/api/products/{NEW_ONLY}").json()["review_count"] == 1  # the same app, the next request
    assert api.get("/api/products").json()["total"] == two.new.product_count()
    assert api.get("/api/prefix").json()["models"][0]["version"] == "B"
    code, out, _ = cli(capsys, "show", NEW_ONLY, "--json")
    assert code == 0 and json.loads(out)["review_count"] == 1

    assert cli(capsys, "promote", two.old.prefix, "--json")[0] == 0
    assert api.get(f"/api/products/{NEW_ONLY}").status_code == 404


def test_promote_refuses_an_empty_or_malformed_prefix(two: Two, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "promote", "nothing-here")
    assert code == 2 and "no aggregates under prefix 'nothing-here'" in err and "\n" not in err.strip()
    code, _, err = cli(capsys, "promote", "a:b")
    assert code == 2 and "no ':'" in err
    assert two.prefixes.active() == two.old.prefix  # nothing changed
    assert cli(capsys, "promote", "nothing-here", "--force")[0] == 0
    assert two.prefixes.active() == "nothing-here"


def test_prefixes_lists_models_and_sizes(two: Two, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "prefixes", "--json")
    assert code == 0
    listed = {p["prefix"]: p for p in json.loads(out)}
    old, new = listed[two.old.prefix], listed[two.new.prefix]
    assert old["active"] and not new["active"]
    assert (old["products"], new["products"]) == (two.old.product_count(), two.old.product_count() + 1)
    assert (old["reviews"], new["reviews"]) == (two.old.totals()["reviews"], two.old.totals()["reviews"] + 1)
    assert [m["version"] for m in old["models"]] == ["A"] and [m["version"] for m in new["models"]] == ["B"]
    code, out, _ = cli(capsys, "prefixes")
    assert f"* {two.old.prefix}  products {old['products']}" in out and "models reviews-mtl B (onnx-int8)" in out


def test_drop_refuses_the_active_prefix_and_deletes_an_old_one(two: Two, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = f"{two.new.prefix}:dlq:redriven"
    two.client.hset(ledger, "reviews:0:1", "{}")
    code, _, err = cli(capsys, "drop", two.old.prefix, "--yes")
    assert code == 2 and "is the one readers read" in err
    assert cli(capsys, "drop", two.new.prefix)[0] == 2  # --yes is required

    before = sorted(two.client.scan_iter(match=f"{two.old.prefix}:*"))
    code, out, err = cli(capsys, "drop", two.new.prefix, "--yes")
    assert code == 0 and out.startswith(f"dropped prefix {two.new.prefix}: "), err
    assert list(two.client.scan_iter(match=f"{two.new.prefix}:*")) == [ledger.encode()]  # the ledger stays
    assert sorted(two.client.scan_iter(match=f"{two.old.prefix}:*")) == before  # the live prefix untouched
    assert cli(capsys, "drop", two.new.prefix, "--yes")[0] == 1  # gone now


def test_dropping_the_prefix_that_holds_the_pointer_keeps_the_pointer(two: Two) -> None:
    pointer_under_old = f"{two.old.prefix}:active-prefix"
    prefixes = Prefixes(two.client, two.old.prefix, pointer_under_old)
    prefixes.promote(two.new.prefix)
    assert prefixes.drop(two.old.prefix) > 0
    assert prefixes.active() == two.new.prefix and two.client.get(pointer_under_old) == two.new.prefix.encode()


def test_a_start_declared_in_a_new_prefix_is_kept_and_a_different_one_refused(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"fresh-{uuid.uuid4().hex[:8]}"
    declare_start(client, prefix, "reviews", {0: 0, 1: 120})
    assert AggregateStore(client, prefix).watermarks() == {("reviews", 1): 119}  # offset 0: nothing to declare
    declare_start(client, prefix, "reviews", {1: 120})  # the same start again (a restarted backfill): fine
    with pytest.raises(PrefixError, match="already holds reviews:1 up to offset 119"):
        declare_start(client, prefix, "reviews", {1: 50})
    client.delete(f"{prefix}:watermarks")
