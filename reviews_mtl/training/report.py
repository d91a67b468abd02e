"""The model card (Markdown) and the HTML evaluation report with plots and statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reviews_mtl.model.artifact import MODEL_CARD_FILE, ArtifactConfig


def _f(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "–"


def summary_rows(metrics: dict[str, Any], baseline: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(metric, model, baseline) rows of the headline table."""

    def get(m: dict[str, Any] | None, *path: str) -> Any:
        for key in path:
            if not isinstance(m, dict) or key not in m:
                return None
            m = m[key]
        return m

    rows = [
        ("sentiment accuracy", ("sentiment", "accuracy")),
        ("sentiment macro-F1", ("sentiment", "macro_f1")),
        ("rating MAE", ("rating", "mae")),
        ("rating RMSE", ("rating", "rmse")),
        ("rating R²", ("rating", "r2")),
        ("rating rounded MAE", ("rating", "rounded_mae")),
        ("5-class star accuracy", ("rating", "accuracy_5class")),
        ("star-balanced sentiment macro-F1", ("star_balanced", "sentiment", "macro_f1")),
        ("star-balanced 5-class accuracy", ("star_balanced", "rating", "accuracy_5class")),
        ("star-balanced rating MAE", ("star_balanced", "rating", "mae")),
        ("aspect macro-F1 (human aspects)", ("aspects", "macro_f1")),
        ("aspect micro-F1", ("aspects", "micro_f1")),
        ("aspect Hamming loss", ("aspects", "hamming_loss")),
        ("aspect macro-F1 (6 target aspects)", ("aspects_target", "macro_f1")),
    ]
    return [(name, _f(get(metrics, *path)), _f(get(baseline, *path))) for name, path in rows]


def write_model_card(out_dir: Path, metrics: dict[str, Any], config: ArtifactConfig) -> Path:
    test = metrics.get("test", {})
    base = metrics.get("baseline", {}).get("test")
    parity = metrics.get("parity", {})
    int8 = metrics.get("int8", {})
    lines = [
        f"# {config.model_name} {config.model_version}",
        "",
        "Multi-task review model: sentiment (negative/neutral/positive), star rating (1–5, float) and ten",
        "aspect probabilities, from one shared encoder with mean pooling and three heads.",
        "",
        f"- Encoder: `{config.encoder}`; max length {config.max_length} tokens; preset `{config.preset}`.",
        f"- Data: `{config.data_source}`; counts: {metrics.get('counts')}.",
        f"- Training: {metrics.get('epochs_run')} epochs of {metrics.get('steps_per_epoch')} steps, best epoch "
        f"{metrics.get('best_epoch')}, {metrics.get('train_seconds')} s on {metrics.get('device')} "
        f"({metrics.get('torch_threads')} threads, {metrics.get('cpu_count')} cores).",
        "- Labels: sentiment from stars (1–2 negative, 3 neutral, 4–5 positive); aspects from SemEval-2016 /",
        "  Laptop-ACOS categories (human) plus a phrase lexicon (weak, down-weighted) for all ten aspects.",
        "",
        "## Held-out test split (grouped by product), model vs TF-IDF + logistic regression",
        "",
        "| metric | model | TF-IDF + LR |",
        "|---|---|---|",
        *[f"| {n} | {m} | {b} |" for n, m, b in summary_rows(test, base)],
        "",
        "## Export parity (validation texts)",
        "",
        f"- ONNX fp32 vs PyTorch: allclose (atol 1e-4) = {parity.get('onnx_fp32', {}).get('allclose_atol_1e-4')}, "
        f"max |Δ| sentiment {_f(parity.get('onnx_fp32', {}).get('max_abs_diff_sentiment'), 6)}.",
        f"- ONNX int8 sentiment label agreement with PyTorch: "
        f"{_f(parity.get('onnx_int8', {}).get('sentiment_label_agreement'), 4)} over {parity.get('rows')} rows.",
        "",
        "## int8 export rule (validation, task metrics)",
        "",
        f"Shipped: `{int8.get('chosen')}` (per-token activation scales: the same text gets the same output in any "
        "batch). A candidate may lose at most 0.005 sentiment macro-F1, 0.01 MAE, 0.01 aspect macro-F1 vs fp32.",
        "",
        "| graph | sentiment macro-F1 | MAE | aspect macro-F1 | rows/s | × fp32 | meets rule |",
        "|---|---|---|---|---|---|---|",
        *(
            [f"| fp32 | {_f(int8['fp32']['sentiment_macro_f1'], 4)} | {_f(int8['fp32']['rating_mae'], 4)} | "
             f"{_f(int8['fp32']['aspect_macro_f1'], 4)} | {int8['fp32']['rows_per_s']} | 1.00 | – |"]
            if int8.get("fp32") else []
        ),
        *[
            f"| {c['name']} | {_f(c['sentiment_macro_f1'], 4)} | {_f(c['rating_mae'], 4)} | "
            f"{_f(c['aspect_macro_f1'], 4)} | {c['rows_per_s']} | {c['speedup_vs_fp32']:.2f} | {c['meets_rule']} |"
            for c in int8.get("candidates", [])
        ],
        "",
        "## Limits",
        "",
        "- `value_for_money`, `packaging` and `durability` have no human labels: their probabilities come from weak",
        "  lexicon labels and their thresholds are tuned against the same weak labels.",
        "- Human aspect labels are laptop sentences; other domains rely on the weak labels.",
        "- Trained on English Amazon-style reviews; research-use data (see the data README).",
        "",
    ]
    path = out_dir / MODEL_CARD_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def statistics(stars: Any, predicted_sentiment: Any, texts: list[str], true_sentiment: Any) -> dict[str, Any]:
    """The seed's statistics: chi-square of true stars × predicted sentiment, ANOVA of length by sentiment."""
    import numpy as np
    from scipy import stats

    table = np.zeros((5, 3), dtype=int)
    for s, p in zip(stars, predicted_sentiment, strict=True):
        if 1 <= s <= 5:
            table[int(s) - 1, int(p)] += 1
    rows, cols = table.sum(axis=1) > 0, table.sum(axis=0) > 0
    chi = stats.chi2_contingency(table[rows][:, cols]) if rows.sum() > 1 and cols.sum() > 1 else None
    lengths = np.array([len(t.split()) for t in texts])
    groups = [lengths[np.asarray(true_sentiment) == k] for k in range(3)]
    groups = [g for g in groups if len(g) > 1]
    anova = stats.f_oneway(*groups) if len(groups) > 1 else None
    n = table.sum()
    result = {
        "chi_square_rating_vs_predicted_sentiment": None
        if chi is None
        else {
            "chi2": float(chi.statistic),
            "dof": int(chi.dof),
            "p_value": float(chi.pvalue),
            "cramers_v": float(np.sqrt(chi.statistic / (n * (min(table[rows][:, cols].shape) - 1)))),
            "table": table.tolist(),
        },
        "anova_length_by_sentiment": None
        if anova is None
        else {
            "f": float(anova.statistic),
            "p_value": float(anova.pvalue),
            "mean_words": [float(g.mean()) for g in groups],
        },
    }
    return {k: v if v is None else {**v, "reading": _reading(k, v)} for k, v in result.items()}


def _reading(name: str, test: dict[str, Any]) -> str:
    """One line saying what a test's figures mean."""
    if name.startswith("chi_square"):
        v = test["cramers_v"]
        strength = "strong" if v >= 0.5 else "moderate" if v >= 0.3 else "weak"
        return (f"Predicted sentiment depends on the true stars (p = {test['p_value']:.2g}); Cramér's V = {v:.2f} is "
                f"a {strength} association (1 would be a perfect star → sentiment mapping).")
    means = test["mean_words"]
    labels = ("negative", "neutral", "positive")[: len(means)]
    longest = labels[int(max(range(len(means)), key=lambda i: means[i]))]
    significant = test["p_value"] < 0.05
    return (f"Review length {'differs' if significant else 'does not differ significantly'} by true sentiment "
            f"(F = {test['f']:.1f}, p = {test['p_value']:.2g}); {longest} reviews are the longest "
            f"({max(means):.0f} words on average).")


def _png(fig: Any) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_html_report(
    path: Path,
    result: dict[str, Any],
    history: list[dict[str, Any]],
    true_stars: Any,
    predicted_rating: Any,
) -> Path:
    """One self-contained HTML page: the side-by-side table, plots (inline PNG) and statistics."""
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    model, base = result["test"], result["baseline_test"]
    images: list[tuple[str, str]] = []

    plt.rcParams.update({"font.size": 11})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, (title, metrics) in zip(axes, (("model", model), ("TF-IDF + LR", base)), strict=True):
        conf = np.array(metrics["sentiment"]["confusion"])
        ax.imshow(conf, cmap="Blues")
        labels = metrics["sentiment"]["labels"]
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"sentiment confusion: {title}")
        for (i, j), v in np.ndenumerate(conf):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=11,
                    color="white" if v > conf.max() / 2 else "black")
    images.append(("Sentiment confusion matrices", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.4))
    stars = np.asarray(true_stars)
    data = [np.asarray(predicted_rating)[stars == s] for s in range(1, 6)]
    ax.boxplot([d if len(d) else [np.nan] for d in data], tick_labels=[str(s) for s in range(1, 6)])
    ax.plot(range(1, 6), range(1, 6), "r--", linewidth=1)
    ax.set_xlabel("true stars")
    ax.set_ylabel("predicted rating")
    ax.set_title("predicted vs true rating")
    images.append(("Predicted vs true rating", _png(fig)))
    plt.close(fig)

    names = list(model["aspects"]["per_aspect"])
    fig, ax = plt.subplots(figsize=(11, 4.4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [model["aspects"]["per_aspect"][n]["f1"] for n in names], 0.4, label="model")
    ax.bar(x + 0.2, [base["aspects"]["per_aspect"].get(n, {}).get("f1", 0) for n in names], 0.4, label="TF-IDF + LR")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("F1 (human labels)")
    ax.legend()
    ax.set_title("per-aspect F1, test sentences")
    images.append(("Per-aspect F1", _png(fig)))
    plt.close(fig)

    if history:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        epochs = [h["epoch"] for h in history]
        for key in ("loss", "sentiment", "rating", "aspects"):
            axes[0].plot(epochs, [h["train_loss"].get(key, np.nan) for h in history], marker="o", label=key)
        axes[0].set_title("training loss")
        axes[0].set_xlabel("epoch")
        axes[0].legend()
        for key in ("validation_score", "validation_sentiment_macro_f1", "validation_aspect_macro_f1"):
            axes[1].plot(epochs, [h[key] for h in history], marker="o", label=key.replace("validation_", ""))
        axes[1].set_title("validation")
        axes[1].set_xlabel("epoch")
        axes[1].legend()
        images.append(("Training curves", _png(fig)))
        plt.close(fig)

    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{m}</td><td>{b}</td></tr>" for n, m, b in summary_rows(model, base)
    )
    per_class = "".join(
        f"<tr><td>{c}</td><td>{_f(v['precision'])}</td><td>{_f(v['recall'])}</td><td>{_f(v['f1'])}</td>"
        f"<td>{v['support']}</td></tr>"
        for c, v in model["sentiment"]["per_class"].items()
    )
    per_aspect = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{_f(v['f1'])}</td>"
        f"<td>{_f(base['aspects']['per_aspect'].get(n, {}).get('f1'))}</td>"
        f"<td>{_f(v['precision'])}</td><td>{_f(v['recall'])}</td><td>{v['support']}</td><td>{v['n']}</td></tr>"
        for n, v in model["aspects"]["per_aspect"].items()
    )
    per_source = "".join(
        f"<tr><td>{html.escape(src)}</td><td>{v['n']}</td><td>{_f(v['macro_f1_target6'])}</td></tr>"
        for src, v in model.get("per_source", {}).items()
    )
    figures = "".join(
        f"<figure><h3>{html.escape(t)}</h3><img alt='{html.escape(t)}' src='data:image/png;base64,{img}'></figure>"
        for t, img in images
    )
    meta = {**result["model"], "data": result["data"], "split": result.get("split", "test"),
            **{f"{k} (count)": v for k, v in result["counts"].items()}}
    meta_rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in meta.items()
    )
    stat_names = {
        "chi_square_rating_vs_predicted_sentiment": "Chi-square: true stars × predicted sentiment",
        "anova_length_by_sentiment": "ANOVA: review length (words) by true sentiment",
    }
    stat_rows = []
    for key, test in result["statistics"].items():
        if not test:
            continue
        figures_of = ", ".join(
            f"{k} = {_f(v, 4) if isinstance(v, float) else html.escape(str(v))}"
            for k, v in test.items() if k not in {"reading", "table", "mean_words"}
        )
        if "mean_words" in test:
            figures_of += ", mean words " + " / ".join(f"{m:.0f}" for m in test["mean_words"])
        stat_rows.append(f"<tr><td><b>{html.escape(stat_names.get(key, key))}</b></td><td>{figures_of}</td>"
                         f"<td>{html.escape(test.get('reading', ''))}</td></tr>")
    split = html.escape(result.get("split", "test"))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>reviews-mtl evaluation</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:0.8em 0}}td,th{{padding:3px 12px;border-bottom:1px solid #ddd;text-align:left;
vertical-align:top}}img{{max-width:100%}}figure{{margin:1.2em 0}}</style></head><body>
<h1>reviews-mtl evaluation</h1>
<h2>Model and data</h2><table id="metadata">{meta_rows}</table>
<h2>{split.capitalize()} split: model vs TF-IDF + logistic regression</h2>
<table id="summary"><tr><th>metric</th><th>model</th><th>TF-IDF + LR</th></tr>{rows}</table>
<h2>Sentiment per class (model)</h2>
<table id="per-class"><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{per_class}</table>
<h2>Aspects per aspect (human-labelled sentences)</h2>
<table id="per-aspect"><tr><th>aspect</th><th>F1 model</th><th>F1 TF-IDF</th><th>precision</th><th>recall</th>
<th>support (positives)</th><th>sentences</th></tr>{per_aspect}</table>
<h2>Aspects by source (macro-F1 over the six target aspects)</h2>
<table id="per-source"><tr><th>source</th><th>sentences</th><th>macro-F1</th></tr>{per_source}</table>
<h2>Statistical tests</h2>
<table id="statistics"><tr><th>test</th><th>figures</th><th>reading</th></tr>{"".join(stat_rows)}</table>
<h2>Plots</h2>{figures}</body></html>"""
    path.write_text(page, encoding="utf-8")
    return path
