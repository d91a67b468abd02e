"""The readable table, the JSON document and the PNG plots of a benchmark run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _met(flag: bool | None) -> str:
    return {True: "MET", False: "NOT MET", None: "not measured"}[flag]


def _model_line(result: dict[str, Any]) -> str:
    m = result.get("model") or {}
    if not m.get("name"):
        return str(result["config"]["model_dir"])
    return (f"{m['name']} (preset {m['preset']}, {m['encoder']}, max_length {m['max_length']}, "
            f"version {m['version']}) from {m['dir']}")


def _latency_groups(e2e: dict[str, Any]) -> list[dict[str, Any]]:
    """Latency rows per replica count; results written before per-count latency hold only the headline's."""
    groups: list[dict[str, Any]] = e2e.get("latency_by_replicas") or [
        {"replicas": e2e["latency_replicas"], "latency": e2e["latency"]}]
    return groups


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"reviews-mtl bench ({'quick' if result['config']['quick'] else 'full'}) on {m['cores']} cores, "
        f"{m['cpu_model']}, GPU: {m['gpu'] or 'none'}; load avg {m['load_avg_1m_at_start']} at start, "
        f"{m.get('load_avg_1m_at_end', '-')} at end",
        f"model: {_model_line(result)}; texts: {result['texts']}",
    ]
    if result.get("servers"):
        lines.append(f"servers: {result['servers']}")
    busy = m.get("other_busy_processes_at_start") or m.get("other_busy_processes_at_end")
    if busy:
        lines.append("other busy processes (shared machine, timings noisy): " + "; ".join(busy[:4]))
    mo = result.get("model_only")
    if mo:
        lines += ["", "Model only (tokenization included), reviews/s", f"{'runtime':<12} {'device':<6} "
                  f"{'batch':>6} {'sub':>5} {'reviews/s':>10}"]
        for r in mo["rows"]:
            lines.append(f"{r['runtime']:<12} {r['device']:<6} {r['batch_size']:>6} {r['sub_batch']:>5} "
                         f"{r['reviews_per_s']:>10,.1f}")
        lines += ["", "Tokenization alone, texts/s: " + ", ".join(
            f"batch {t['batch_size']}: {t['texts_per_s']:,.0f}" for t in mo["tokenization"])]
    e2e = result.get("e2e")
    if e2e:
        lines += ["", "End to end (broker + Redis + worker processes), drain of a pre-loaded topic",
                  f"{'replicas':>8} {'threads':>7} {'reviews':>8} {'reviews/s':>10} {'steady/s':>9} {'start-up s':>10} "
                  f"{'model-only just before':>22} {'worker RSS MB':>13}"]
        for t in e2e["throughput"]:
            lines.append(f"{t['replicas']:>8} {t['threads_per_worker']:>7} {t['reviews']:>8} "
                         f"{t['reviews_per_s']:>10,.1f} {t['steady_reviews_per_s']:>9,.1f} {t['startup_s']:>10.1f} "
                         f"{_fmt(t.get('model_only_adjacent_per_s')):>22} {_fmt(t.get('worker_peak_rss_mb')):>13}")
        for group in _latency_groups(e2e):
            headline = " (headline: best throughput)" if group["replicas"] == e2e["latency_replicas"] else ""
            lines += ["", f"Latency, review timestamp → enriched record visible (read_committed), "
                          f"{group['replicas']} replica(s){headline}",
                      f"{'load':>5} {'offered/s':>9} {'sent/s':>8} {'n':>6} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} "
                      f"{'max s':>7} | p50 parts: {'→model':>7} {'→produce':>8} {'→visible':>8}"]
            for x in group["latency"]:
                lines.append(f"{x['load']:>5.0%} {x['offered_per_s']:>9,.1f} {x['achieved_per_s']:>8,.1f} "
                             f"{x['reviews']:>6} {x['p50_s']:>7.3f} {x['p95_s']:>7.3f} {x['p99_s']:>7.3f} "
                             f"{x['max_s']:>7.3f} |            {_fmt(x.get('to_prediction_p50_s'), 3):>7} "
                             f"{_fmt(x.get('prediction_to_produce_p50_s'), 3):>8} "
                             f"{_fmt(x.get('produce_to_visible_p50_s'), 3):>8}")
    for group in (e2e or {}).get("latency_by_batching", []):
        lines += ["", f"Latency with {group['batching']} micro-batches (round {group['round']}, same offered rates), "
                      f"{group['replicas']} replica(s): load, p50 · p95 · p99 s: " + "; ".join(
                          f"{x['load']:.0%} {x['p50_s']:.3f} · {x['p95_s']:.3f} · {x['p99_s']:.3f}"
                          for x in group["latency"])]
    seed = result.get("seed_setup")
    if seed:
        lines += ["", f"Seed's setup as a service ({seed['encoder']}, batch {seed['batch_size']}, padded to "
                      f"{seed['padded_length']}): {seed['reviews_per_s']:,.2f} reviews/s over "
                      f"{seed['reviews']} reviews"]
    ph = result.get("phases")
    if ph:
        lines += ["", f"Where one worker's time goes ({ph['reviews']} reviews, {ph['seconds']:.2f}s, "
                      f"{ph['reviews_per_s']:,.1f} reviews/s in-process)",
                  f"{'phase':<52} {'s':>7} {'share':>6} {'µs/review':>10}"]
        for row in ph["phases"]:
            lines.append(f"{row['phase']:<52} {row['seconds']:>7.3f} {row['share']:>6.1%} "
                         f"{row['us_per_review']:>10.1f}")
    api = result.get("predict_api")
    if api:
        lines += ["", f"Predict endpoint vs in-process predict ({api['runtime']}, {api['concurrency']} concurrent "
                      f"callers, one review per request, {api['duration_s']:g} s per leg)",
                  f"{'path':<72} {'requests/s':>10} {'reviews/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6}"]
        for r in api["rows"]:
            errors = f"  errors {r['errors']}" if r["errors"] else ""
            lines.append(f"{r['path']:<72} {r['requests_per_s']:>10,.1f} {r['reviews_per_s']:>9,.1f} "
                         f"{_fmt(r['p50_ms']):>8} {_fmt(r['p99_ms']):>8} {_fmt(r['mean_batch']):>6}{errors}")
        lines.append(f"  endpoint ÷ in-process (1 per call): requests/s {_fmt(api['api_over_in_process'], 2)}, "
                     f"p99 {_fmt(api['api_p99_over_in_process_p99'], 2)}")
    if result.get("redis_script"):
        from reviews_mtl.bench.redis_script import render_redis_script

        lines += render_redis_script(result["redis_script"])
    sh = result.get("shadow")
    if sh:
        lines += ["", "A shadow model's cost to the live path (one in-process worker, the live artifact as its own "
                      "shadow)",
                  f"{'drain':<14} {'reviews':>7} {'batches':>7} {'reviews/s':>9} {'batch s':>8} {'inference s':>11} "
                  f"{'shadow s':>8} {'rest s':>7}"]
        for r in sh["runs"]:
            lines.append(f"{'with shadow' if r['shadow'] else 'without':<14} {r['reviews']:>7} {r['batches']:>7} "
                         f"{_fmt(r['reviews_per_s']):>9} {_fmt(r['batch_s'], 3):>8} {_fmt(r['inference_s'], 3):>11} "
                         f"{_fmt(r['shadow_s'], 3):>8} {_fmt(r['rest_s'], 3):>7}")
        lines.append(f"  a live batch takes {_fmt(sh['batch_s_added'], 3)} s longer with the shadow; the shadow takes "
                     f"{_fmt(sh['shadow_s_per_batch'], 3)} s per batch (added ÷ shadow "
                     f"{_fmt(sh['added_over_shadow'], 2)}); the rest of a batch (decode, Redis, Kafka): "
                     f"{_fmt(sh['rest_s_without'], 3)} s without, {_fmt(sh['rest_s_with'], 3)} s with")
    if result.get("ceiling"):
        from reviews_mtl.bench.ceiling import render_ceiling
        from reviews_mtl.bench.redis_script import render_redis_script

        lines += render_ceiling(result["ceiling"])
        if result["ceiling"].get("redis_script"):
            lines += render_redis_script(result["ceiling"]["redis_script"])
    lines += ["", "Headline",
              f"  model_only_reviews_per_s (ONNX int8, best batch) {_fmt(result.get('model_only_reviews_per_s'))}",
              f"  e2e_reviews_per_s                                {_fmt(result.get('e2e_reviews_per_s'))}",
              f"  e2e_latency_p99_s (50% load)                     {_fmt(result.get('e2e_latency_p99_s'), 3)}",
              f"  seed_setup_reviews_per_s                         {_fmt(result.get('seed_setup_reviews_per_s'), 2)}",
              f"  ceiling_reviews_per_s (constant-cost predictor)  {_fmt(result.get('ceiling_reviews_per_s'))}",
              f"  redis_script_reviews_per_s                       {_fmt(result.get('redis_script_reviews_per_s'))}",
              f"  e2e_over_model_only / adjacent                   {_fmt(result.get('e2e_over_model_only'), 3)} / "
              f"{_fmt(result.get('e2e_over_model_only_adjacent'), 3)}",
              "", "Targets"]
    for name, t in result["targets"].items():
        at_most = "latency" in name or "rss" in name
        lines.append(f"  {name:<36} {_fmt(t['value'], 3):>10}  target {'≤' if at_most else '≥'} "
                     f"{t['target']:g}: {_met(t['met'])}")
    for name, error in (result.get("errors") or {}).items():
        lines.append(f"  FAILED part {name}: {error[:400]}")
    lines.append(f"\n(elapsed {result['elapsed_s']:.0f}s; worker logs in {result['logs']})")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")


def write_phase_comparison(labelled: list[tuple[str, dict[str, Any]]], path: Path) -> Path | None:
    """Where a review's time goes in the pipeline ceiling, one stacked bar (µs per review by named phase) per
    result: before and after a change, measured in the same session. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        logger.warning("matplotlib is not installed (pip install 'reviews-mtl[train]'): no plots")
        return None
    rows = [(label, r["ceiling_phases_us_per_review"], r.get("ceiling_reviews_per_s")) for label, r in labelled
            if r.get("ceiling_phases_us_per_review")]
    if not rows:
        return None
    phases = list(rows[0][1])
    fig, ax = plt.subplots(figsize=(10, 1.8 + 0.7 * len(rows)))
    colors = [plt.get_cmap("tab10")(i) for i in range(10)]
    for y, (_label, us, _rate) in enumerate(rows):
        left = 0.0
        for i, phase in enumerate(phases):
            width = float(us.get(phase, 0.0))
            ax.barh(y, width, left=left, color=colors[i % len(colors)], label=phase if y == 0 else None)
            left += width
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{label}\n{rate:,.0f} reviews/s" if rate else label for label, _us, rate in rows],
                       fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("µs per review in one worker (constant-cost model: everything but the model's math)")
    machine = labelled[0][1].get("machine", {})
    ax.set_title(f"Where a review's time goes\n{machine.get('cores', '?')} cores, {machine.get('cpu_model', '')}",
                 fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m reviews_mtl.bench.report compare LABEL=RESULT.json ... --out PLOT.png``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m reviews_mtl.bench.report")
    sub = parser.add_subparsers(dest="command", required=True)
    compare = sub.add_parser("compare", help="plot where a review's time goes, one bar per bench result")
    compare.add_argument("results", nargs="+", help="LABEL=path/to/bench.json (with a ceiling part)")
    compare.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    labelled = []
    for item in args.results:
        label, _, path = item.rpartition("=")
        labelled.append((label or Path(path).stem, json.loads(Path(path).read_text())))
    written = write_phase_comparison(labelled, args.out)
    print(written or "nothing to plot (no ceiling part in these results)")
    return 0 if written else 1


def write_plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """throughput_vs_batch.png, latency_vs_load.png and phases.png (whatever was measured); needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        logger.warning("matplotlib is not installed (pip install 'reviews-mtl[train]'): no plots")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    machine = result["machine"]
    where = f"{machine['cores']} cores, {machine['cpu_model']}" + (f", {machine['gpu']}" if machine["gpu"] else "")
    mo = result.get("model_only")
    if mo:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for runtime in dict.fromkeys(r["runtime"] for r in mo["rows"]):
            rows = [r for r in mo["rows"] if r["runtime"] == runtime and r["batch_size"] == r["sub_batch"]]
            ax.plot([r["batch_size"] for r in rows], [r["reviews_per_s"] for r in rows], marker="o", label=runtime)
        if result.get("e2e_reviews_per_s"):
            ax.axhline(result["e2e_reviews_per_s"], color="k", linestyle="--", label="end to end (best)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size (texts per call)")
        ax.set_ylabel("reviews/s (tokenization included)")
        ax.set_title(f"Model only throughput\n{where}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / "throughput_vs_batch.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    e2e = result.get("e2e")
    if e2e and e2e["latency"]:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        colors = ("tab:blue", "tab:green", "tab:purple", "tab:orange")
        for group, color in zip(_latency_groups(e2e), colors, strict=False):
            loads = [x["load"] * 100 for x in group["latency"]]
            for key, style in (("p50_s", "--"), ("p99_s", "-")):
                ax.plot(loads, [x[key] for x in group["latency"]], marker="o", linestyle=style, color=color,
                        label=f"{group['replicas']} replica(s) {key[:-2]}")
        batching_colors = {"adaptive": "tab:red", "fixed": "tab:gray"}
        for group in e2e.get("latency_by_batching", []):
            loads = [x["load"] * 100 for x in group["latency"]]
            first = group["round"] == 1
            ax.plot(loads, [x["p99_s"] for x in group["latency"]], marker="s", linestyle="-.", alpha=0.8,
                    color=batching_colors.get(group["batching"], "tab:brown"),
                    label=f"{group['batching']} batches p99" if first else None)
        ax.axhline(0.5, color="r", linestyle=":", label="p99 target at 50%")
        ax.axhline(1.0, color="k", linestyle=":", label="p99 target at 90%")
        ax.set_yscale("log")  # sub-second figures at light load and a backlog's seconds near the maximum
        ax.set_xlabel("offered load, % of the measured maximum of that replica count")
        ax.set_ylabel("seconds, review timestamp → enriched visible")
        ax.set_title(f"End-to-end latency by offered load\n{where}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / "latency_vs_load.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if result.get("ceiling"):
        phases = write_phase_comparison([("this run", result)], out_dir / "phases.png")
        if phases is not None:
            written.append(phases)
    return written


if __name__ == "__main__":
    raise SystemExit(main())
