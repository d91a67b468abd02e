"""Text bound for a terminal: ids and review texts come from strangers, so control characters are escaped
(an ESC sequence in a product id must not clear or recolour the operator's screen)."""

from __future__ import annotations

_ESCAPES = {ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}


def escape_for_terminal(text: str) -> str:
    """C0 and C1 control characters (and DEL) as visible escapes; everything else, accents included, as is."""
    return "".join(_ESCAPES.get(ord(c), f"\\x{ord(c):02x}") if ord(c) < 32 or 0x7F <= ord(c) < 0xA0 else c
                   for c in text)


def one_line(message: object, limit: int = 500) -> str:
    """An error message on one line, for a CLI that prints one line per error."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
