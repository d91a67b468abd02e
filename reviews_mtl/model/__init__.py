"""The multi-task review model: data, labels, model, trainer, evaluation, export and inference.

Start reading here: ``sources`` (review data) → ``modeling`` (the model, one file) → ``train`` (trainer,
presets in ``presets``) → ``export`` (artifact files, ONNX) → ``runtime`` (inference; torch-free ONNX path).
Only :mod:`reviews_mtl.model.runtime` and :mod:`reviews_mtl.model.artifact` are needed to serve a model.
"""

from reviews_mtl.model.artifact import ArtifactError, ensure_demo_model
from reviews_mtl.model.runtime import Predictor, load_predictor
from reviews_mtl.model.sources import SourceReview, load_review_pool, load_sample_reviews

__all__ = [
    "ArtifactError",
    "Predictor",
    "SourceReview",
    "ensure_demo_model",
    "load_predictor",
    "load_review_pool",
    "load_sample_reviews",
]
