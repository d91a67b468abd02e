"""What a worker ships: the model artifact format, the runtimes and batch prediction.

Start reading here: ``artifact`` (``config.json`` typed, the files, the ONNX names) → ``predictor`` (tokenize,
sort and pad, build Predictions) → ``runtime`` (``load_predictor``; ONNX on CPU) and ``runtime_torch`` (GPU).
Never imports ``reviews_mtl.training`` or ``reviews_mtl.data``; only ``runtime_torch`` and ``modeling`` import torch.
"""

from reviews_mtl.model.artifact import ArtifactConfig, ArtifactError
from reviews_mtl.model.predictor import Predictor
from reviews_mtl.model.runtime import load_predictor

__all__ = ["ArtifactConfig", "ArtifactError", "Predictor", "load_predictor"]
