"""What ``reviews-mtl dlq`` prints: values and headers with control characters escaped, tables, JSON."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from reviews_mtl.dlq.reader import DeadLetterEntry, ReasonSummary
from reviews_mtl.dlq.redrive import RedriveReport

DEFAULT_VALUE_BYTES = 600


def escape(text: str) -> str:
    """``text`` safe for a terminal: every non-printable character (controls, ANSI escapes, bidi marks) as
    ``\\n``, ``\\x1b``, ``\\u202e``..., backslashes doubled so the escapes stay unambiguous."""
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that was not UTF-8 (decoded with surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def escape_value(value: bytes | None, max_bytes: int = DEFAULT_VALUE_BYTES) -> str:
    """A message value for display: ``(no value)``, or its UTF-8 text (bytes that are not UTF-8 as ``\\xNN``),
    escaped, cut at ``max_bytes`` with the full size named."""
    if value is None:
        return "(no value)"
    shown = escape(value[:max_bytes].decode("utf-8", "surrogateescape"))
    return shown if len(value) <= max_bytes else f"{shown}… ({len(value):,} bytes)"


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_summary(topic: str, summaries: list[ReasonSummary], redriven: set[str] | None,
                   entries: list[DeadLetterEntry]) -> str:
    total = sum(s.count for s in summaries)
    if not total:
        return f"{topic}: no dead letters selected"
    cut = sum(s.cut for s in summaries)
    state = "re-drive state unknown (Redis unavailable)" if redriven is None else (
        f"{sum(1 for e in entries if e.source in redriven)} already re-driven")
    lines = [f"{topic}: {total} dead letter(s), {len(summaries)} reason(s); {state}; "
             f"{cut} cut to fit the DLQ (not re-drivable)",
             f"{'reason':<24} {'count':>7} {'cut':>5}  {'first':<20} {'last':<20}"]
    for s in summaries:
        lines.append(f"{escape(s.reason):<24} {s.count:>7} {s.cut:>5}  {_time(s.first_ms):<20} {_time(s.last_ms):<20}")
        for e in s.samples:
            lines.append(f"    {e.where}  from {escape(e.source or '-')}: {escape(_detail(e))[:100]}")
            lines.append(f"        {escape_value(e.value, 160)}")
    return "\n".join(lines)


def _detail(entry: DeadLetterEntry) -> str:
    return entry.letter.detail if entry.letter is not None else (entry.problem or "")


def render_entry(entry: DeadLetterEntry, redriven: str | None, max_bytes: int = DEFAULT_VALUE_BYTES) -> str:
    letter = entry.letter
    lines = [f"{entry.where}  at {_time(entry.timestamp_ms)}",
             f"  source     {escape(entry.source or '-')}",
             f"  reason     {escape(entry.reason)}" + (f" ({escape(letter.error_class)})" if letter else ""),
             f"  detail     {escape(_detail(entry))}",
             f"  key        {escape_value(entry.key, 200)}"]
    if entry.cut:
        size = f"{entry.original_size:,} bytes" if entry.original_size and entry.original_size > 0 else "unknown size"
        lines.append(f"  cut        the DLQ holds part of the original ({size}): not re-drivable from here")
    if redriven is not None:
        lines.append(f"  re-driven  {redriven}")
    lines.append(f"  value      {escape_value(entry.value, max_bytes)}")
    return "\n".join(lines)


def entry_json(entry: DeadLetterEntry, redriven: str | None = None) -> dict[str, Any]:
    letter = entry.letter
    return {
        "dlq": {"topic": entry.topic, "partition": entry.partition, "offset": entry.offset,
                "timestamp_ms": entry.timestamp_ms},
        "source": letter.source.model_dump() if letter else None,
        "reason": entry.reason,
        "error_class": letter.error_class if letter else None,
        "detail": _detail(entry),
        "cut": entry.cut,
        "original_size": entry.original_size,
        "redriven": redriven,
        "key": entry.key.decode("utf-8", "backslashreplace") if entry.key is not None else None,
        "value": entry.value.decode("utf-8", "backslashreplace") if entry.value is not None else None,
    }


def render_report(report: RedriveReport) -> str:
    verb = "would re-drive" if report.dry_run else "re-drove"
    lines = [f"{verb} {len(report.sent)} of {report.selected} selected dead letter(s) to {report.to_topic}"
             + (" (dry run: nothing sent, nothing recorded)" if report.dry_run else "")]
    if report.already:
        lines.append(f"  {len(report.already)} already re-driven before: skipped")
    if report.cut:
        named = ", ".join(escape(s) for s in report.cut[:5]) + (", …" if len(report.cut) > 5 else "")
        lines.append(f"  {len(report.cut)} cut to fit the DLQ: skipped, the original is only at its source "
                     f"coordinates ({named})")
    if report.unreadable:
        lines.append(f"  {len(report.unreadable)} with unreadable dead-letter headers: skipped")
    for source, error in report.failed.items():
        lines.append(f"  FAILED {escape(source)}: {error} (not recorded: a later re-drive tries again)")
    if report.unknown:
        lines.append(f"  {len(report.unknown)} without a delivery report in time: recorded as re-driven, check "
                     f"{report.to_topic} ({', '.join(escape(s) for s in report.unknown[:5])})")
    return "\n".join(lines)


def report_json(report: RedriveReport) -> dict[str, Any]:
    return {"to_topic": report.to_topic, "dry_run": report.dry_run, "selected": report.selected,
            "sent": report.sent, "already": report.already, "cut": report.cut, "unreadable": report.unreadable,
            "failed": report.failed, "unknown": report.unknown}
