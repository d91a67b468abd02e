"""What every enriched record says about the model that made it: name, version and runtime."""

from __future__ import annotations

import json

from consumer.processing import BatchProcessor, InMessage
from tests.fixtures.memory_store import MemoryStore
from tests.unit.test_consumer_processing import FakePredictor


def test_every_enriched_record_carries_the_model_name_version_and_runtime() -> None:
    predictor = FakePredictor()
    predictor.runtime = "onnx-int8"
    value = json.dumps({"review_id": "r1", "product_id": "p1", "text": "Lovely kettle"}).encode()
    out = BatchProcessor(predictor, MemoryStore()).process([InMessage("reviews", 0, 0, b"p1", value)])
    record = json.loads(out.enriched[0].value or b"")
    assert (record["model_name"], record["model_version"], record["model_runtime"]) == ("fake", "fake-1", "onnx-int8")
