"""Hot reload: switch to a new model artifact between two batches, without a restart.

Start here: :class:`ModelReloader`. The worker calls :meth:`ModelReloader.between_batches` after every loop turn.
At most every ``interval_s`` seconds (and at once after SIGHUP, :meth:`ModelReloader.request_check`) it takes the
artifact's :class:`Fingerprint` at ``PATH`` (a directory, or a link such as ``models/current -> models/v7``): the
resolved directory and ``config.json``'s inode, size and mtime, a few ``stat`` calls. When that changed, the new
artifact is loaded in a background thread from its *resolved* directory (a link moved again meanwhile cannot mix
two artifacts), warmed and checked (:func:`check_candidate`: config readable, a smoke prediction, the same
labels), while the old model goes on serving. The next turn after it is ready switches: the batch in hand was
entirely predicted by the old model, the next one entirely by the new one, so one batch never mixes two
models. A refused candidate leaves the old model serving, logs one line, counts
``reviews_mtl_model_reload_failures_total`` and is not tried again until ``PATH`` changes again (or SIGHUP).

At most two models are in memory, and only while a candidate loads: nothing keeps the old one after a switch.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from consumer.metrics import ModelMetrics
from consumer.processing import Predictor
from reviews_mtl.model.artifact import CONFIG_FILE, ArtifactConfig
from reviews_mtl.terminal import one_line

log = logging.getLogger(__name__)

# The smoke prediction: short, long and mixed texts, so the warm-up also allocates for a long sequence.
SMOKE_TEXTS: tuple[str, ...] = (
    "Works great, arrived on time and the price was fair.",
    "Broke after two days. The customer service never answered.",
    "It is okay. " + "The packaging was fine, the design is plain, the battery lasts a day or so. " * 8,
)


class ReloadError(Exception):
    """A candidate artifact that must not replace the serving one."""


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What identifies the artifact at ``PATH`` now, cheaply: a new link target or a rewritten config changes it."""

    directory: Path  # PATH resolved: a link's target
    config_inode: int
    config_size: int
    config_mtime_ns: int


def fingerprint(path: Path) -> Fingerprint:
    """The artifact at ``path`` now; raises ``OSError`` when it (or its ``config.json``) is not there."""
    directory = Path(path).resolve(strict=True)
    st = (directory / CONFIG_FILE).stat()
    return Fingerprint(directory, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class Labels:
    sentiment: tuple[str, ...]
    aspects: tuple[str, ...]

    @classmethod
    def of(cls, config: ArtifactConfig) -> Labels:
        return cls(tuple(config.sentiment_labels), tuple(config.aspect_names))


# Rows of the smoke prediction: enough for the first run's allocations (one long row among them), few enough that
# loading beside a busy model steals little CPU: 64 rows took 1.9 s on a loaded 2-core machine, 8 rows 0.3 s.
WARM_ROWS = 8


def check_candidate(candidate: Predictor, labels: Labels, expected: Labels | None, warm_rows: int = WARM_ROWS) -> None:
    """Raise :class:`ReloadError` unless ``candidate`` predicts sane values with the labels the live model has.

    ``labels`` is what the candidate's config declares; ``expected`` the serving model's (None: anything). The
    smoke prediction is also the warm-up: ``warm_rows`` rows, so the first live batch pays no allocation.
    """
    if expected is not None and labels != expected:
        raise ReloadError(f"its labels differ from the serving model's: sentiment {list(labels.sentiment)} vs "
                          f"{list(expected.sentiment)}, aspects {list(labels.aspects)} vs {list(expected.aspects)}")
    texts = [SMOKE_TEXTS[i % len(SMOKE_TEXTS)] for i in range(max(warm_rows, len(SMOKE_TEXTS)))]
    try:
        predictions = candidate.predict(texts)
    except Exception as exc:
        raise ReloadError(f"the smoke prediction failed: {type(exc).__name__}: {exc}") from exc
    if len(predictions) != len(texts):
        raise ReloadError(f"the smoke prediction returned {len(predictions)} results for {len(texts)} texts")
    for p in predictions:
        if p.sentiment.label not in labels.sentiment or set(p.sentiment.probabilities) != set(labels.sentiment):
            raise ReloadError(f"the smoke prediction has sentiment {p.sentiment.label!r} over "
                              f"{sorted(p.sentiment.probabilities)}, not over {list(labels.sentiment)}")
        if set(p.aspects) != set(labels.aspects) or not set(p.aspects_detected) <= set(labels.aspects):
            raise ReloadError(f"the smoke prediction's aspects {sorted(p.aspects)} are not {list(labels.aspects)}")
        values = [p.rating, *p.sentiment.probabilities.values(), *p.aspects.values()]
        if not all(math.isfinite(v) for v in values) or not 1.0 <= p.rating <= 5.0:
            raise ReloadError(f"the smoke prediction has values out of range (rating {p.rating})")


Loader = Callable[[Path], Predictor]
OnSwitch = Callable[[Predictor, Path], None]  # the checked model and its resolved directory


@dataclass
class _Load:
    """One candidate being loaded in the background; ``result`` or ``error`` once ``done``."""

    fingerprint: Fingerprint
    started: float
    done: threading.Event
    result: tuple[Predictor, Labels] | None = None
    error: str | None = None


class ModelReloader:
    """Watches ``path`` and switches the worker's model between batches (see the module docstring).

    ``loader`` builds a predictor from a resolved artifact directory; ``on_switch`` installs a checked one (the
    worker's processor, the prefix's model list). ``background=False`` loads inline (tests).
    """

    def __init__(
        self,
        path: Path,
        loader: Loader,
        on_switch: OnSwitch,
        metrics: ModelMetrics,
        current: Predictor,
        current_fingerprint: Fingerprint | None,
        *,
        interval_s: float,
        warm_rows: int = WARM_ROWS,
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.loader = loader
        self.on_switch = on_switch
        self.metrics = metrics
        self.interval_s = interval_s
        self.warm_rows = warm_rows
        self.background = background
        self.clock = clock
        self.current = current
        self.current_fingerprint = current_fingerprint
        self.labels: Labels | None = _labels_at(current_fingerprint)
        self._requested = threading.Event()
        self._last_check = clock()
        self._loading: _Load | None = None
        # The candidate refused last (or the error reading PATH): not retried until PATH changes, or SIGHUP.
        self._refused: Fingerprint | str | None = None
        metrics.serving(current.model_name, current.model_version, current.runtime)

    def request_check(self) -> None:
        """Look at ``PATH`` at the next batch boundary, and retry a refused artifact (safe from a signal handler)."""
        self._requested.set()

    @property
    def loading(self) -> bool:
        return self._loading is not None

    def between_batches(self, handled: int = 0) -> None:
        """Called by the worker between two batches: switch to a loaded candidate, or start loading a new one."""
        if self._loading is not None:
            if self._loading.done.is_set():
                self._finish(self._loading)
            return
        forced = self._requested.is_set()
        if not forced and (self.interval_s <= 0 or self.clock() - self._last_check < self.interval_s):
            return
        self._requested.clear()
        self._last_check = self.clock()
        try:
            seen: Fingerprint | str = fingerprint(self.path)
        except OSError as exc:
            seen = f"cannot read {self.path}: {exc.strerror or exc}"
        if seen == self.current_fingerprint or (seen == self._refused and not forced):
            return
        if isinstance(seen, str):
            self._refuse(seen, seen)
            return
        load = _Load(seen, self.clock(), threading.Event())
        self._loading = load
        log.info("new model artifact at %s (%s): loading it beside the serving one", self.path, seen.directory)
        if self.background:
            threading.Thread(target=self._load, args=(load,), name="model-reload", daemon=True).start()
        else:
            self._load(load)
            self._finish(load)

    def wait_loaded(self, timeout_s: float) -> bool:
        """Block until a candidate being loaded is ready (tests, benchmarks)."""
        load = self._loading
        return load is None or load.done.wait(timeout_s)

    # -- internals --------------------------------------------------------------------------------------------

    def _load(self, load: _Load) -> None:
        try:
            labels = Labels.of(ArtifactConfig.read(load.fingerprint.directory))
            candidate = self.loader(load.fingerprint.directory)
            check_candidate(candidate, labels, self.labels, self.warm_rows)
            load.result = (candidate, labels)
        except Exception as exc:  # whatever a broken artifact raises, the serving model stays
            load.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ReloadError) else str(exc)
        finally:
            load.done.set()

    def _finish(self, load: _Load) -> None:
        self._loading = None
        elapsed = self.clock() - load.started
        self.metrics.load_seconds.observe(elapsed)
        if load.result is None:
            self._refuse(load.fingerprint, load.error or "unknown error")
            return
        candidate, labels = load.result
        load.result = None  # the reloader keeps one reference to a model: the serving one
        old = self.current
        self.on_switch(candidate, load.fingerprint.directory)
        self.current, self.current_fingerprint, self.labels = candidate, load.fingerprint, labels
        self._refused = None
        self.metrics.reloads.inc()
        self.metrics.serving(candidate.model_name, candidate.model_version, candidate.runtime)
        log.info("model switched between batches: %s %s (%s) -> %s %s (%s) from %s, loaded and checked in %.1fs",
                 old.model_name, old.model_version, old.runtime, candidate.model_name, candidate.model_version,
                 candidate.runtime, load.fingerprint.directory, elapsed)

    def _refuse(self, seen: Fingerprint | str, reason: str) -> None:
        self._refused = seen
        self.metrics.reload_failures.inc()
        where = seen.directory if isinstance(seen, Fingerprint) else self.path
        log.error("%s", one_line(f"model reload failed, still serving {self.current.model_name} "
                                 f"{self.current.model_version}: {where}: {reason}"))


def _labels_at(fp: Fingerprint | None) -> Labels | None:
    if fp is None:
        return None
    try:
        return Labels.of(ArtifactConfig.read(fp.directory))
    except Exception:  # the serving model loaded; a config that vanished since only loses the label check
        return None

