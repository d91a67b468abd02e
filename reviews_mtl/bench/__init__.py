"""``reviews-mtl bench``: measured speed of the model, the pipeline and the seed's design, in one run.

Start reading here: :mod:`reviews_mtl.bench.cli` parses the flags into a :class:`~reviews_mtl.bench.runner.BenchConfig`
and :func:`~reviews_mtl.bench.runner.run_bench` runs the parts in order: :mod:`.model_only` (runtimes × batch
sizes, tokenization alone), :mod:`.end_to_end` (real broker, Redis and consumer processes: max throughput by
replicas, then latency at fixed offered loads), :mod:`.seed_setup` (the seed's DistilBERT loop as a service) and
:mod:`.phases` (where a worker's time goes); :mod:`.report` prints the table and writes JSON and plots.
"""

from __future__ import annotations

__all__ = ["BenchConfig", "run_bench"]

from reviews_mtl.bench.runner import BenchConfig, run_bench
