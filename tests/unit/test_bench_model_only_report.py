"""Model-only measurement on the tiny artifact, and the report (table, JSON, plots) from its result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reviews_mtl.bench.model_only import run_model_only
from reviews_mtl.bench.report import render, write_json, write_plots
from reviews_mtl.bench.runner import targets

TEXTS = [f"Review number {i}: the strap broke after a week but the price was fair." * (1 + i % 3) for i in range(40)]


@pytest.fixture(scope="module")
def model_only(tiny_model_dir: Path) -> dict[str, Any]:
    return run_model_only(tiny_model_dir, TEXTS, batch_sizes=(4, 16), max_s=0.2, threads=1, cuda=False, rounds=2)


def test_model_only_rows_cover_runtimes_and_batches(model_only: dict[str, Any]) -> None:
    runtimes = {r["runtime"] for r in model_only["rows"]}
    assert {"onnx-int8", "onnx-fp32"} <= runtimes
    for row in model_only["rows"]:
        assert row["reviews_per_s"] > 0 and row["reviews"] > 0
        assert len(row["round_rates"]) == 2  # interleaved rounds, the median reported
    sizes = {(r["batch_size"], r["sub_batch"]) for r in model_only["rows"] if r["runtime"] == "onnx-int8"}
    assert sizes == {(4, 4), (16, 16), (256, 64)}  # the worker's own shape rides along
    assert [t["batch_size"] for t in model_only["tokenization"]] == [4, 16]
    assert model_only["model_only_reviews_per_s"] == model_only["best_onnx_int8"]["reviews_per_s"]
    assert model_only["best_onnx_int8"]["batch_size"] in (4, 16, 256)


def _result(model_only: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "config": {"quick": True, "model_dir": "tiny"},
        "texts": "test texts",
        "machine": {"cores": 2, "cpu_model": "test cpu", "gpu": None, "load_avg_1m_at_start": 0.5,
                    "load_avg_1m_at_end": 0.6, "other_busy_processes_at_start": ["50% something else"]},
        "model_only": model_only,
        "model_only_reviews_per_s": model_only["model_only_reviews_per_s"],
        "e2e": {
            "throughput": [{"replicas": 1, "threads_per_worker": 2, "reviews": 100, "seconds": 1.0,
                            "reviews_per_s": 100.0, "steady_reviews_per_s": 99.0, "startup_s": 3.0}],
            "best": {"replicas": 1, "reviews_per_s": 100.0},
            "latency_replicas": 1,
            "latency": [{"load": load, "offered_per_s": 100 * load, "achieved_per_s": 100 * load, "reviews": 10,
                         "p50_s": 0.1, "p95_s": 0.2, "p99_s": 0.3, "max_s": 0.4, "mean_s": 0.1,
                         "to_prediction_p50_s": 0.05, "prediction_to_produce_p50_s": 0.01,
                         "produce_to_visible_p50_s": 0.02} for load in (0.25, 0.5, 0.9)],
        },
        "e2e_reviews_per_s": 100.0,
        "e2e_latency_p99_s": 0.3,
        "seed_setup_reviews_per_s": 4.0,
        "e2e_over_model_only": 0.5,
        "e2e_over_seed": 25.0,
        "elapsed_s": 12.0,
        "logs": "/tmp/x",
    }
    e2e = result["e2e"]
    slower = [dict(x, p99_s=0.9) for x in e2e["latency"]]
    e2e["latency_by_replicas"] = [{"replicas": 1, "max_reviews_per_s": 100.0, "latency": e2e["latency"]},
                                  {"replicas": 2, "max_reviews_per_s": 90.0, "latency": slower}]
    result["targets"] = targets(result, cuda=False)
    return result


def test_report_table_json_and_plots(model_only: dict[str, Any], tmp_path: Path) -> None:
    result = _result(model_only)
    table = render(result)
    assert "onnx-int8" in table and "Latency" in table and "NOT MET" in table and "shared machine" in table
    # One latency table per replica count, the best-throughput one marked as the headline.
    assert "1 replica(s) (headline: best throughput)" in table and "2 replica(s)\n" in table
    assert "  0.900" in table
    write_json(result, tmp_path / "out" / "bench.json")
    loaded = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert loaded["e2e_over_seed"] == 25.0
    plots = write_plots(result, tmp_path / "plots")
    assert {p.name for p in plots} == {"throughput_vs_batch.png", "latency_vs_load.png"}
    for p in plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
