"""Hot reload on the tiny artifact: a new link target is loaded beside the old model, checked, and switched to only
between batches; a broken or incompatible one is refused once, loudly, and the old model keeps serving."""

from __future__ import annotations

import gc
import json
import logging
import weakref
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from consumer.metrics import ModelMetrics
from consumer.model_reload import ModelReloader, fingerprint
from consumer.processing import BatchProcessor, InMessage, Predictor
from reviews_mtl.contracts import ASPECT_NAMES, Review
from reviews_mtl.model import load_predictor
from reviews_mtl.model.artifact import CONFIG_FILE, ONNX_INT8_FILE
from tests.fixtures.memory_store import MemoryStore
from tests.fixtures.model import copy_artifact, point_link


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def load(directory: Path) -> Predictor:
    return load_predictor(directory, runtime="onnx-int8", intra_op_threads=1)


@pytest.fixture()
def models(tiny_model_dir: Path, tmp_path: Path) -> dict[str, Path]:
    a = copy_artifact(tiny_model_dir, tmp_path / "model-a", version="A")
    b = copy_artifact(tiny_model_dir, tmp_path / "model-b", version="B")
    current = tmp_path / "current"
    current.symlink_to(a)
    return {"a": a, "b": b, "current": current}


class Harness:
    """A reloader over the ``current`` link, with what it switched to recorded."""

    def __init__(self, current: Path, *, interval_s: float = 5.0, background: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.metrics = ModelMetrics.create(self.registry)
        self.clock = Clock()
        self.switched: list[str] = []
        fp = fingerprint(current)
        self.serving: Predictor = load(fp.directory)
        self.reloader = ModelReloader(current, load, self.switch, self.metrics, self.serving, fp,
                                      interval_s=interval_s, warm_rows=4, background=background, clock=self.clock)

    def switch(self, new: Predictor, directory: Path) -> None:
        self.serving = new
        self.switched.append(new.model_version)

    def metric(self, series: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(series, labels)

    def turn(self, seconds: float = 6.0) -> None:
        self.clock.now += seconds
        self.reloader.between_batches(0)


def test_the_fingerprint_follows_the_link_and_the_config(models: dict[str, Path]) -> None:
    first = fingerprint(models["current"])
    assert first.directory == models["a"].resolve() and fingerprint(models["current"]) == first
    point_link(models["current"], models["b"])
    assert fingerprint(models["current"]).directory == models["b"].resolve()
    config = models["b"] / CONFIG_FILE
    before = fingerprint(models["current"])
    config.write_text(config.read_text() + " ")
    assert fingerprint(models["current"]) != before  # a rewritten config.json in place is a change too


def test_a_new_link_target_is_switched_to_at_the_next_check(models: dict[str, Path]) -> None:
    h = Harness(models["current"])
    assert h.metric("reviews_mtl_model_info", name="reviews-mtl-tiny", version="A", runtime="onnx-int8") == 1.0
    h.turn()
    assert h.switched == []  # nothing changed: nothing loaded
    point_link(models["current"], models["b"])
    h.turn(1.0)
    assert h.switched == []  # checks are rate-limited: 1 s after the last one is too early
    h.turn(5.0)
    assert h.switched == ["B"] and h.serving.model_version == "B"
    assert h.metric("reviews_mtl_model_reloads_total") == 1.0
    assert h.metric("reviews_mtl_model_info", name="reviews-mtl-tiny", version="B", runtime="onnx-int8") == 1.0
    assert h.metric("reviews_mtl_model_info", name="reviews-mtl-tiny", version="A", runtime="onnx-int8") is None
    h.turn()
    assert h.switched == ["B"]  # B is current now


def test_sighup_looks_at_once_and_interval_zero_means_only_then(models: dict[str, Path]) -> None:
    h = Harness(models["current"], interval_s=0)
    point_link(models["current"], models["b"])
    h.turn(3600)
    assert h.switched == []
    h.reloader.request_check()
    h.turn(0)
    assert h.switched == ["B"]


def test_a_broken_artifact_is_refused_once_and_the_old_model_keeps_serving(
    models: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = copy_artifact(models["b"], tmp_path / "broken", version="broken")
    (broken / ONNX_INT8_FILE).write_bytes(b"not an onnx graph")
    h = Harness(models["current"])
    point_link(models["current"], broken)
    with caplog.at_level(logging.ERROR, logger="consumer.model_reload"):
        for _ in range(3):
            h.turn()
    assert h.switched == [] and h.serving.model_version == "A"
    assert h.serving.predict(["still works"])[0].sentiment.label in ("negative", "neutral", "positive")
    assert h.metric("reviews_mtl_model_reload_failures_total") == 1.0  # once, not at every check
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("model reload failed, still serving reviews-mtl-tiny A: ") and str(broken) in line
    assert "\n" not in line
    assert h.metric("reviews_mtl_model_info", name="reviews-mtl-tiny", version="A", runtime="onnx-int8") == 1.0

    point_link(models["current"], models["b"])  # the fix ships
    h.turn()
    assert h.switched == ["B"]


@pytest.mark.parametrize("breakage", ["config_json", "labels", "missing"])
def test_unreadable_or_incompatible_artifacts_are_refused(
    models: dict[str, Path], tmp_path: Path, breakage: str
) -> None:
    h = Harness(models["current"])
    if breakage == "config_json":
        bad = copy_artifact(models["b"], tmp_path / "bad", version="bad")
        (bad / CONFIG_FILE).write_text("{not json")
        point_link(models["current"], bad)
    elif breakage == "labels":
        other = tuple(f"aspect_{i}" for i in range(len(ASPECT_NAMES)))  # same shape, other meaning
        bad = copy_artifact(models["b"], tmp_path / "bad", version="bad", aspect_names=other)
        point_link(models["current"], bad)
    else:
        point_link(models["current"], tmp_path / "nowhere")  # a dangling link
    h.turn()
    assert h.switched == [] and h.metric("reviews_mtl_model_reload_failures_total") == 1.0


def test_loading_happens_beside_the_serving_model_and_the_switch_waits_for_a_boundary(
    models: dict[str, Path],
) -> None:
    h = Harness(models["current"], background=True)
    point_link(models["current"], models["b"])
    h.turn()
    assert h.reloader.loading and h.switched == []  # loading in the background; A serves meanwhile
    assert h.reloader.wait_loaded(60)
    assert h.switched == []  # ready, but only a batch boundary switches
    h.turn(0)
    assert h.switched == ["B"] and not h.reloader.loading


def test_the_old_model_is_freed_after_a_switch(models: dict[str, Path]) -> None:
    h = Harness(models["current"])
    old = weakref.ref(h.serving)
    point_link(models["current"], models["b"])
    h.turn()
    assert h.switched == ["B"]
    gc.collect()
    assert old() is None  # neither the reloader nor anything else keeps model A


def _messages(start: int, n: int) -> list[InMessage]:
    return [InMessage("reviews", 0, o, b"p1", Review(review_id=f"r{o}", product_id="p1", text=f"fine #{o}").to_bytes())
            for o in range(start, start + n)]


def test_each_batch_is_predicted_by_one_model(models: dict[str, Path]) -> None:
    """The worker's order: process a batch, then the hook. A load finishing mid-batch switches after it."""
    h = Harness(models["current"], background=True)
    processor = BatchProcessor(h.serving, MemoryStore())

    def switch(new: Predictor, directory: Path) -> None:
        processor.predictor = new
        h.switched.append(new.model_version)

    h.reloader.on_switch = switch
    versions: list[set[str]] = []
    point_link(models["current"], models["b"])
    for i in range(6):
        out = processor.process(_messages(10 * i, 10))
        versions.append({json.loads(r.value or b"")["model_version"] for r in out.enriched})
        if i == 1:
            h.reloader.wait_loaded(60)
        h.turn()
    assert all(len(v) == 1 for v in versions), versions
    assert [v.pop() for v in versions] == ["A", "A", "B", "B", "B", "B"]
