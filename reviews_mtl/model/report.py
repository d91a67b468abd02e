"""The model card (Markdown) and the HTML evaluation report with plots and statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reviews_mtl.model.artifact import MODEL_CARD_FILE


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


def write_model_card(out_dir: Path, metrics: dict[str, Any], config: dict[str, Any]) -> Path:
    test = metrics.get("test", {})
    base = metrics.get("baseline", {}).get("test")
    parity = metrics.get("parity", {})
    lines = [
        f"# {config['model_name']} {config['model_version']}",
        "",
        "Multi-task review model: sentiment (negative/neutral/positive), star rating (1–5, float) and ten",
        "aspect probabilities, from one shared encoder with mean pooling and three heads.",
        "",
        f"- Encoder: `{config['encoder']}`; max length {config['max_length']} tokens; preset `{config['preset']}`.",
        f"- Data: `{config.get('data_source')}`; counts: {metrics.get('counts')}.",
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
