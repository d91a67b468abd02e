"""reviews-mtl: Kafka in, one multi-task transformer, enriched records and Redis aggregates out.

Start reading here: ``contracts`` (what travels on the topics), ``settings`` (every knob, also as env),
``cli`` (the ``reviews-mtl`` command and where each subcommand lives).
"""

from reviews_mtl.contracts import (
    ASPECT_NAMES,
    SENTIMENT_LABELS,
    DeadLetter,
    DecodeFailure,
    DecodeReason,
    EnrichedRecord,
    Prediction,
    Review,
    decode_review,
)

__all__ = [
    "ASPECT_NAMES",
    "SENTIMENT_LABELS",
    "DeadLetter",
    "DecodeFailure",
    "DecodeReason",
    "EnrichedRecord",
    "Prediction",
    "Review",
    "decode_review",
]
__version__ = "0.1.0"
