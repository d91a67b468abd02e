"""Torch's CPU thread count, chosen by timing real training steps rather than by a load sample at start-up.

Start here: :class:`ThreadTuner` wraps the training loop's steps. At the first step and every
``recheck_steps`` after it, it runs ``probe_steps`` steps with each candidate count (real steps: nothing is
wasted), compares seconds per token, and keeps the faster count until the next check. On a shared 2-core
machine the best count changes with the neighbours' load (one thread ran a step 3–4× faster than two
under load; two are faster when the machine is idle), so it is measured again as the run goes on.
"""

from __future__ import annotations

import logging
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

logger = logging.getLogger(__name__)


def thread_candidates(cores: int | None = None) -> tuple[int, ...]:
    """1 and every core (and half of them, on bigger machines)."""
    n = cores or os.cpu_count() or 1
    return tuple(sorted({1, max(1, n // 2), n}))


@dataclass
class ThreadTuner:
    """Chooses the thread count by measuring. ``fixed`` > 0 pins it (``--threads``) and measures nothing."""

    fixed: int = 0
    candidates: Sequence[int] = field(default_factory=thread_candidates)
    probe_steps: int = 3
    recheck_steps: int = 100
    chosen: int = 0
    choices: list[dict[str, float]] = field(default_factory=list)  # each check's figures, for metrics.json
    _step: int = 0
    _timings: dict[int, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fixed > 0:
            self.chosen = self.fixed
            torch.set_num_threads(self.fixed)
        elif len(self.candidates) == 1:
            self.fixed = self.chosen = self.candidates[0]
            torch.set_num_threads(self.chosen)

    def _probe_plan(self) -> list[int]:
        return [c for c in self.candidates for _ in range(self.probe_steps)]

    def before_step(self) -> None:
        """Set the thread count for the step about to run."""
        if self.fixed:
            return
        cycle = self._step % self.recheck_steps
        plan = self._probe_plan()
        threads = plan[cycle] if cycle < len(plan) else self.chosen or max(self.candidates)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    def after_step(self, seconds: float, tokens: int) -> None:
        """Record the step just run (its wall time and its padded token count)."""
        if self.fixed:
            self._step += 1
            return
        cycle = self._step % self.recheck_steps
        plan = self._probe_plan()
        if cycle < len(plan):
            self._timings.setdefault(plan[cycle], []).append(seconds / max(1, tokens))
            if cycle == len(plan) - 1:
                self._choose()
        self._step += 1

    def _choose(self) -> None:
        per_token = {t: statistics.median(v) for t, v in self._timings.items() if v}
        self._timings = {}
        if not per_token:
            return
        best = min(per_token, key=lambda t: per_token[t])
        if best != self.chosen:
            logger.info(
                "torch threads: %d (µs per token %s)",
                best,
                ", ".join(f"{t}: {v * 1e6:.1f}" for t, v in sorted(per_token.items())),
            )
        self.chosen = best
        self.choices.append({"step": float(self._step), "threads": float(best),
                             **{f"us_per_token_{t}": round(v * 1e6, 2) for t, v in per_token.items()}})
        torch.set_num_threads(best)
