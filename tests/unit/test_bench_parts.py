"""The benchmark's pure parts: rates, percentiles, latency parts, id streams, targets, config and CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from reviews_mtl.bench.end_to_end import WorkerConfig, _parts, _percentiles, _rate
from reviews_mtl.bench.infra import Arrival
from reviews_mtl.bench.runner import PARTS, BenchConfig, _p99_at, _p99_at_half_load, _ratio, targets
from reviews_mtl.bench.texts import stream
from reviews_mtl.contracts import Review


def test_rate_counts_records_after_the_first_instant() -> None:
    # The first batch becomes visible at t=10 (4 records); 6 more arrive by t=13: 6 records in 3 s.
    times = [10.0] * 4 + [11.0, 11.0, 12.0, 12.0, 13.0, 13.0]
    arrivals = [Arrival(t, None, str(i)) for i, t in enumerate(times)]
    rate, span = _rate(arrivals)
    assert span == pytest.approx(3.0)
    assert rate == pytest.approx(2.0)
    assert math.isnan(_rate(arrivals[:1])[0])


def test_percentiles_and_latency_parts() -> None:
    pct = _percentiles([0.1 * i for i in range(1, 101)])
    assert pct["p50_s"] == pytest.approx(5.05, abs=1e-3)
    assert pct["p99_s"] == pytest.approx(9.901, abs=1e-3)
    assert pct["max_s"] == pytest.approx(10.0)
    parts = _parts([Arrival(seen_at=10.5, event_time=10.0, review_id="a", processed_at=10.3, produced_at=10.4)])
    assert parts == {"to_prediction_p50_s": pytest.approx(0.3), "prediction_to_produce_p50_s": pytest.approx(0.1),
                     "produce_to_visible_p50_s": pytest.approx(0.1)}


def test_stream_gives_unique_ids_per_tag() -> None:
    base = [Review(review_id=f"r{i}", product_id="p", text="fine") for i in range(3)]
    first = [r.review_id for r in stream(base, 7, "a-")]
    second = [r.review_id for r in stream(base, 7, "b-")]
    assert len(set(first)) == 7
    assert not set(first) & set(second)


def test_worker_threads_split_cores_between_replicas() -> None:
    config = WorkerConfig(Path("m"), cores=2)
    assert config.threads(1) == 2
    assert config.threads(2) == 1
    assert config.threads(4) == 1


def test_targets_and_ratios() -> None:
    assert _ratio(90.0, 100.0) == 0.9
    assert _ratio(None, 100.0) is None
    assert _ratio(1.0, 0.0) is None
    latency = [{"load": 0.25, "p99_s": 0.2}, {"load": 0.5, "p99_s": 0.4}, {"load": 0.9, "p99_s": 2.0}]
    assert _p99_at_half_load(latency) == 0.4
    assert _p99_at(latency, 0.9) == 2.0 and _p99_at(latency, 0.75) is None
    result = {"e2e_over_model_only": 0.9, "e2e_over_seed": 12.0, "e2e_latency_p99_s": 0.4,
              "e2e_latency_p99_s_at_90pct": 2.0, "worker_peak_rss_mb": 420.0}
    checked = targets(result, cuda=False)
    assert checked["e2e_over_model_only"]["met"] is True
    assert checked["e2e_over_seed"]["met"] is False and checked["e2e_over_seed"]["target"] == 30.0
    assert checked["e2e_latency_p99_s_at_50pct"]["met"] is True
    assert checked["e2e_latency_p99_s_at_90pct"]["met"] is False
    assert checked["worker_peak_rss_mb"]["met"] is True
    assert "gpu_e2e_reviews_per_s_one_worker" not in checked
    assert targets({}, cuda=True)["gpu_e2e_reviews_per_s_one_worker"]["met"] is None


def test_quick_preset_is_smaller_and_overrides_win() -> None:
    full = BenchConfig.preset(Path("m"))
    quick = BenchConfig.preset(Path("m"), quick=True, replicas=(1,), loads=None)
    assert quick.texts < full.texts and quick.e2e_reviews < full.e2e_reviews
    assert quick.replicas == (1,)
    assert quick.loads == full.loads  # None leaves the preset's value


def test_cli_builds_the_config(tmp_path: Path) -> None:
    from reviews_mtl.bench.cli import config_from_args
    from reviews_mtl.cli import build_parser

    args = build_parser().parse_args([
        "bench", "--model", str(tmp_path), "--quick", "--skip", "seed,phases", "--replicas", "1,2,3",
        "--loads", "0.5", "--batch-sizes", "4,8", "--broker", "apache", "--json", str(tmp_path / "b.json"),
    ])
    assert args.func.__module__ == "reviews_mtl.bench.cli"
    config = config_from_args(args)
    assert config.parts == ("model-only", "e2e", "predict-api", "redis", "shadow", "ceiling")
    assert config.replicas == (1, 2, 3)
    assert config.loads == (0.5,)
    assert config.batch_sizes == (4, 8)
    assert config.broker == "apache"
    assert config.quick
    with pytest.raises(SystemExit):
        config_from_args(build_parser().parse_args(["bench", "--model", str(tmp_path), "--only", "nope"]))
    assert set(PARTS) == {"model-only", "e2e", "seed", "phases", "predict-api", "redis", "shadow", "ceiling"}


def test_phase_breakdown_accounts_for_the_whole_wall_time() -> None:
    from collections import defaultdict

    from reviews_mtl.bench.phases import PhaseClock, _breakdown

    clock = PhaseClock()
    def double(x: int) -> int:
        return x * 2

    timed = clock.wrap("decode", double)
    assert timed(3) == 6 and clock.calls["decode"] == 1
    seconds = defaultdict(float, {
        "consume": 1.0, "collect": 1.1, "process": 6.0, "decode": 0.2, "predict_and_build": 4.5, "predict": 4.0,
        "tokenize": 0.5, "run_encoded": 3.0, "to_predictions": 0.3, "serialize": 0.3, "redis_watermarks_for": 0.1,
        "redis_inflight": 0.0, "redis_apply_batch": 0.7, "publish": 0.8,
    })
    rows = _breakdown(seconds, wall=8.0, records=1000)
    assert sum(r["seconds"] for r in rows) == pytest.approx(8.0)
    by_name = {r["phase"]: r for r in rows}
    assert by_name["model (ONNX Runtime / torch run)"]["share"] == pytest.approx(3.0 / 8.0)
    # Serializing happens inside predict_and_build: its time is counted once, in its own row.
    assert by_name["build enriched records"]["us_per_review"] == pytest.approx(200.0)
    assert by_name["serialize enriched JSON"]["us_per_review"] == pytest.approx(300.0)


def test_owned_partitions_replays_a_workers_rebalance_log(tmp_path: Path) -> None:
    from reviews_mtl.bench.infra import _owned_partitions

    log = tmp_path / "worker0.log"
    assert _owned_partitions(log) == set()  # not started yet
    log.write_text(
        "2026-11-27 12:43:11,025 INFO consumer.worker assigned t:0, t:1, t:2, t:3\n"
        "2026-11-27 12:43:12,000 INFO consumer.worker revoked t:2, t:3\n"
        "2026-11-27 12:43:13,000 INFO consumer.worker assigned nothing\n"
        "2026-11-27 12:43:14,000 WARNING consumer.worker lost t:0\n"
        "2026-11-27 12:43:15,000 INFO consumer.worker assigned t:5\n"
    )
    assert _owned_partitions(log) == {"t:1", "t:5"}


def test_named_pipeline_phases_sum_the_finer_rows() -> None:
    from collections import defaultdict

    from reviews_mtl.bench.phases import PIPELINE_PHASES, _breakdown, pipeline_phases

    seconds = defaultdict(float, {
        "consume": 0.5, "collect": 0.6, "process": 6.0, "decode": 0.4, "predict_and_build": 3.0, "predict": 2.5,
        "tokenize": 1.5, "run_encoded": 0.2, "to_predictions": 0.3, "serialize": 0.2, "redis_watermarks_for": 0.1,
        "redis_apply_batch": 1.5, "redis_script_call": 1.2, "publish": 1.0, "produce": 0.3,
    })
    rows = _breakdown(seconds, wall=8.0, records=1000)
    named = pipeline_phases(rows)
    assert set(named) == set(PIPELINE_PHASES)
    # Every finer row belongs to exactly one named phase, so the named phases add up to the wall time.
    assert sorted(n for names in PIPELINE_PHASES.values() for n in names) == sorted(r["phase"] for r in rows)
    assert sum(named.values()) == pytest.approx(8000.0, abs=0.5)
    assert named["tokenize"] == pytest.approx(1500.0)
    assert named["redis_script"] == pytest.approx(1600.0)  # reads + arguments + the call
    assert named["produce"] == pytest.approx(300.0) and named["commit"] == pytest.approx(700.0)
