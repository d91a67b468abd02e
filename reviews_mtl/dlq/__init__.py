"""Dead letters after the fact: inspect ``reviews.dlq`` and re-drive selected originals to the input topic.

Start reading here: ``selection`` (which dead letters: ``--reason``, ``--since``, ``--limit``) → ``reader``
(the DLQ read with read_committed, one :class:`DeadLetterEntry` per record, counts by reason) → ``ledger``
(the Redis hash of what was re-driven, by source coordinates) → ``redrive`` (each original re-published at
most once) → ``render`` and ``cli`` (``reviews-mtl dlq list|show|redrive``).
"""

from reviews_mtl.dlq.ledger import RedriveLedger
from reviews_mtl.dlq.reader import DeadLetterEntry, ReasonSummary, read_dead_letters, summarize
from reviews_mtl.dlq.redrive import RedriveReport, redrive
from reviews_mtl.dlq.selection import Selection, parse_since

__all__ = [
    "DeadLetterEntry",
    "ReasonSummary",
    "RedriveLedger",
    "RedriveReport",
    "Selection",
    "parse_since",
    "read_dead_letters",
    "redrive",
    "summarize",
]
