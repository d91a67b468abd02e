"""The ceiling's stand-in model: the artifact's real tokenizer, fixed valid predictions, never a service runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reviews_mtl.bench.ceiling import CONSTANT_COST_RUNTIME, ConstantCostPredictor
from reviews_mtl.contracts import ASPECT_NAMES, SENTIMENT_LABELS, Prediction


def test_constant_cost_predictor_tokenizes_and_answers_valid_predictions(tiny_model_dir: Path) -> None:
    predictor = ConstantCostPredictor(tiny_model_dir, batch_size=4)
    seen: list[Any] = []
    tokenize = predictor.tokenize

    def spy(texts: Any) -> Any:
        batches = tokenize(texts)
        seen.extend(batches)
        return batches

    predictor.tokenize = spy  # type: ignore[method-assign]
    texts = ["Great kettle, boils fast.", "Broke after a week. Avoid.", "ok", "The lid " * 200, "fine", "meh"]
    predictions = predictor.predict(texts)
    assert len(predictions) == len(texts)
    # The real tokenizer ran, in sub-batches of the given size, truncated to the artifact's max_length.
    assert sum(len(b.positions) for b in seen) == len(texts) and max(len(b.positions) for b in seen) <= 4
    assert max(b.input_ids.shape[1] for b in seen) == predictor.max_length
    for p in predictions:
        assert isinstance(p, Prediction)
        Prediction.model_validate(p.model_dump())  # valid by the contract, not only constructed
        assert p.sentiment.label in SENTIMENT_LABELS and 1.0 <= p.rating <= 5.0
        assert set(p.aspects) == set(ASPECT_NAMES) and set(p.aspects_detected) <= set(ASPECT_NAMES)
    assert predictor.runtime == predictor.model_name == CONSTANT_COST_RUNTIME
    # The same text gets the same answer, whatever its batch.
    assert predictor.predict([texts[1]])[0] == predictions[1]


def test_constant_cost_predictor_is_not_a_service_runtime() -> None:
    from reviews_mtl.cli import build_parser
    from reviews_mtl.model.runtime import RUNTIMES

    assert CONSTANT_COST_RUNTIME not in RUNTIMES
    with pytest.raises(SystemExit):
        build_parser().parse_args(["consume", "--runtime", CONSTANT_COST_RUNTIME])
