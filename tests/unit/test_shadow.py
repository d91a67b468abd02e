"""The shadow model beside the live one (tiny artifacts): one shadow record per live record, agreement metrics,
a share of the batches, the live output unchanged, a failing shadow harmless, and one transaction for both."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from consumer.metrics import WorkerMetrics
from consumer.output import KafkaOutput
from consumer.processing import BatchOutput, BatchProcessor, InMessage, OutRecord
from consumer.shadow import BatchSampler, ShadowProcessor, aspect_jaccard
from reviews_mtl.contracts import ASPECT_NAMES, EnrichedRecord, Prediction, Review
from reviews_mtl.model import load_predictor
from tests.fixtures.memory_store import MemoryStore
from tests.fixtures.model import copy_artifact
from tests.unit.test_consumer_output import FakeConsumer, FakeProducer

TEXTS = ["Great value, sturdy and cheap.", "Broke in a week, shipping was slow.", "It is fine I guess.",
         "The box was crushed and support never answered."]


def messages(start: int, n: int) -> list[InMessage]:
    out = []
    for o in range(start, start + n):
        review = Review(review_id=f"r{o}", product_id=f"p{o % 3}", text=TEXTS[o % len(TEXTS)] + f" #{o}")
        out.append(InMessage("reviews", o % 2, o, review.product_id.encode(), review.to_bytes()))
    out.append(InMessage("reviews", 0, start + n, b"p0", b"{not json"))  # a dead letter: no shadow record
    return out


class Clock:
    def __call__(self) -> float:
        return 1_700_000_000.0


@pytest.fixture(scope="module")
def live_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_artifact(tiny_model_dir, tmp_path_factory.mktemp("live") / "a", version="live-1")


@pytest.fixture(scope="module")
def shadow_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The same weights with other aspect thresholds: sentiment and rating agree, detected aspects do not always.
    thresholds = {name: 0.45 + 0.01 * i for i, name in enumerate(ASPECT_NAMES)}
    return copy_artifact(tiny_model_dir, tmp_path_factory.mktemp("shadow") / "b", version="cand-2",
                         aspect_thresholds=thresholds)


def load(directory: Path) -> Any:
    return load_predictor(directory, runtime="onnx-fp32", intra_op_threads=1)


def test_aspect_jaccard() -> None:
    assert aspect_jaccard([], []) == 1.0
    assert aspect_jaccard(["price"], []) == 0.0
    assert aspect_jaccard(["price", "quality"], ["quality", "shipping"]) == pytest.approx(1 / 3)


def test_the_sampler_takes_an_exact_even_share() -> None:
    assert [BatchSampler(1.0).take() for _ in range(3)] == [True] * 3
    sampler = BatchSampler(0.25)
    assert [sampler.take() for _ in range(8)] == [True, False, False, False] * 2
    third = BatchSampler(1 / 3)
    assert sum(third.take() for _ in range(300)) == 100
    with pytest.raises(ValueError):
        BatchSampler(0.0)


def test_one_shadow_record_per_live_record_and_the_live_output_unchanged(live_dir: Path, shadow_dir: Path) -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    plain = BatchProcessor(load(live_dir), MemoryStore(), clock=Clock())
    shadowed = ShadowProcessor(BatchProcessor(load(live_dir), MemoryStore(), clock=Clock()), load(shadow_dir),
                               metrics.shadow, clock=Clock())
    agree_aspects = 0
    n = 0
    for start in (0, 20):
        batch = messages(start, 16)
        expected = plain.process(batch)
        out = shadowed.process(batch)
        live = [json.loads(r.value or b"") for r in out.enriched]
        for record in (*live, *(json.loads(r.value or b"") for r in expected.enriched)):
            record.pop("processing_ms")  # a timing, not a prediction
        assert live == [{k: v for k, v in json.loads(r.value or b"").items() if k != "processing_ms"}
                        for r in expected.enriched]  # the shadow changes nothing of the live output
        assert out.dead_letters == expected.dead_letters and out.next_offsets == expected.next_offsets
        assert len(out.shadow) == len(out.enriched) == 16
        for rec, shadow in zip(out.enriched, out.shadow, strict=True):
            s = EnrichedRecord.model_validate_json(shadow.value or b"")  # reads like an enriched record
            l_ = EnrichedRecord.model_validate_json(rec.value or b"")
            assert shadow.key == rec.key and (s.review_id, s.source) == (l_.review_id, l_.source)
            assert (s.model_version, l_.model_version) == ("cand-2", "live-1")
            assert s.sentiment.label == l_.sentiment.label and s.rating == l_.rating  # same weights, same batch
            agree_aspects += set(s.aspects_detected) == set(l_.aspects_detected)
            n += 1

    def value(series: str, **labels: str) -> float | None:
        return registry.get_sample_value(series, labels)

    assert value("reviews_mtl_shadow_reviews_total") == n == 32
    assert value("reviews_mtl_shadow_sentiment_agreements_total") == n
    assert value("reviews_mtl_shadow_rating_abs_delta_sum") == 0.0
    assert value("reviews_mtl_shadow_aspect_jaccard_count") == n
    assert agree_aspects < n  # the thresholds differ: the Jaccard mean is below 1
    assert value("reviews_mtl_shadow_aspect_jaccard_sum") < n  # type: ignore[operator]
    assert value("reviews_mtl_shadow_seconds_count") == 2
    assert value("reviews_mtl_shadow_model_info", name="reviews-mtl-tiny", version="cand-2",
                 runtime="onnx-fp32") == 1.0


def test_a_share_of_the_batches(live_dir: Path, shadow_dir: Path) -> None:
    metrics = WorkerMetrics.create(CollectorRegistry())
    shadowed = ShadowProcessor(BatchProcessor(load(live_dir), MemoryStore()), load(shadow_dir), metrics.shadow,
                               share=0.5)
    sizes = [len(shadowed.process(messages(10 * i, 4)).shadow) for i in range(4)]
    assert sizes == [4, 0, 4, 0]


class Broken:
    model_name, model_version, runtime = "broken", "0", "none"

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        raise RuntimeError("candidate crashed")


def test_a_failing_shadow_costs_the_live_path_nothing(live_dir: Path) -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    shadowed = ShadowProcessor(BatchProcessor(load(live_dir), MemoryStore()), Broken(), metrics.shadow)
    out = shadowed.process(messages(0, 8))
    assert len(out.enriched) == 8 and out.shadow == []
    assert registry.get_sample_value("reviews_mtl_shadow_errors_total") == 1.0


class RecordingProducer(FakeProducer):
    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any) -> None:
        super().produce(topic, value, key)
        self.calls.append(f"produce:{topic}")


def test_shadow_records_go_to_the_shadow_topic_in_the_batch_transaction() -> None:
    producer = RecordingProducer()
    output = KafkaOutput(lambda: producer, FakeConsumer(), enriched_topic="out", dlq_topic="dlq",  # type: ignore[arg-type,return-value]
                         transactional=True, shadow_topic="out.shadow")
    output.start()
    out = BatchOutput(enriched=[OutRecord(b"k", b"e1")], shadow=[OutRecord(b"k", b"s1")],
                      next_offsets={("in", 0): 7})
    output.publish(out)
    assert producer.calls == ["init", "begin", "produce:out", "produce:out.shadow", "offsets:0@7", "commit"]
    assert ("out.shadow", b"s1") in producer.produced

    without = RecordingProducer()
    plain = KafkaOutput(lambda: without, FakeConsumer(), enriched_topic="out", dlq_topic="dlq",  # type: ignore[arg-type,return-value]
                        transactional=True)
    plain.start()
    plain.publish(out)
    assert "produce:out.shadow" not in without.calls  # no shadow topic, no shadow records


def test_without_a_shadow_model_the_worker_is_built_exactly_as_before(tiny_model_dir: Path) -> None:
    """Disabled means absent: no wrapper around the live processor and no shadow topic on the output."""
    from consumer.app import build_worker
    from reviews_mtl.settings import ConsumerSettings, KafkaSettings, RedisSettings, TopicSettings

    kafka, redis_settings = KafkaSettings(bootstrap_servers="127.0.0.1:1"), RedisSettings(url="redis://127.0.0.1:1/0")  # type: ignore[arg-type]
    plain = build_worker(ConsumerSettings(model_dir=tiny_model_dir, runtime="onnx-int8", metrics_port=0), kafka,
                         TopicSettings(), redis_settings)
    assert type(plain.worker.processor) is BatchProcessor and plain.worker.output.shadow_topic is None
    shadowed = build_worker(ConsumerSettings(model_dir=tiny_model_dir, runtime="onnx-int8", metrics_port=0,
                                             shadow_model_dir=tiny_model_dir), kafka, TopicSettings(), redis_settings)
    assert isinstance(shadowed.worker.processor, ShadowProcessor)
    assert shadowed.worker.output.shadow_topic == "reviews.enriched.shadow"
    for process in (plain, shadowed):
        process.worker.consumer.close()
