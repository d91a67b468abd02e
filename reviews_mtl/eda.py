"""``reviews-mtl eda --data DIR --output DIR``: the seed's exploratory analysis of the training data, as one
HTML page with plots, tables and a one-line reading of each statistical test.

Start here: :func:`write_eda` reads the review pool and the aspect sentences (:mod:`reviews_mtl.data`), computes
:func:`review_frame`'s per-review features, runs the tests of :func:`statistical_tests` and writes
``eda.html`` (images inline) and ``eda.json`` (the figures). Plots: star and sentiment distributions (by source),
text length by sentiment (histogram and box plot), aspect frequency (human labels and the weak lexicon),
a correlation heatmap of the numeric features, and a word cloud per sentiment (``wordcloud``).

Needs the ``train`` extra (matplotlib, scipy, pandas, wordcloud); registration imports none of them.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SENTIMENTS = ("negative", "neutral", "positive")
COLORS = {"negative": "#d62728", "neutral": "#7f7f7f", "positive": "#2ca02c"}


def register(sub: Any) -> None:
    from reviews_mtl.settings import DataSettings, ModelToolSettings

    tools = ModelToolSettings()
    p: argparse.ArgumentParser = sub.add_parser(
        "eda", help="exploratory analysis of the review data: one HTML page with plots and statistical tests"
    )
    p.add_argument("--data", type=Path, default=DataSettings().dir,
                   help="review data folder (env REVIEWS_DATA_DIR; default ../shared/data, else the sample)")
    p.add_argument("--sample", action="store_true", help="the project's own sample data")
    p.add_argument("--output", type=Path, default=tools.eda_output or Path("eda"),
                   help="folder for eda.html and eda.json (env REVIEWS_EDA_OUTPUT; default ./eda)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from reviews_mtl.data.paths import resolve_data_dir

    data_dir = None if args.sample else resolve_data_dir(args.data)
    result = write_eda(data_dir, args.output)
    print(json.dumps({"page": result["page"], "reviews": result["reviews"], "tests": list(result["tests"])}))
    return 0


def review_frame(data_dir: Path | None) -> Any:
    """One row per review: source, stars, sentiment, words, characters, punctuation, helpful votes, weak aspects."""
    import numpy as np
    import pandas as pd

    from reviews_mtl.data.sources import load_review_pool, load_sample_reviews

    reviews = load_sample_reviews() if data_dir is None else load_review_pool(data_dir)
    texts = [r.model_text() for r in reviews]
    from reviews_mtl.training.lexicon import weak_vector

    frame = pd.DataFrame(
        {
            "source": [r.source for r in reviews],
            "stars": [r.rating for r in reviews],
            "text": texts,
            "words": [len(t.split()) for t in texts],
            "characters": [len(t) for t in texts],
            "exclamations": [t.count("!") for t in texts],
            "questions": [t.count("?") for t in texts],
            "uppercase_share": [sum(c.isupper() for c in t) / max(1, sum(c.isalpha() for c in t)) for t in texts],
            "helpful_votes": [r.helpful_votes if r.helpful_votes is not None else np.nan for r in reviews],
            "recommended": [r.recommended for r in reviews],
            "weak_aspects": [int(sum(weak_vector(t))) for t in texts],
        }
    )
    frame["sentiment"] = frame["stars"].map(lambda s: "negative" if s <= 2 else "neutral" if s == 3 else "positive")
    return frame


def statistical_tests(frame: Any) -> dict[str, dict[str, Any]]:
    """Each test: its figures and a one-line reading."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    tests: dict[str, dict[str, Any]] = {}
    groups = [frame.loc[frame.sentiment == s, "words"].to_numpy() for s in SENTIMENTS]
    groups = [g for g in groups if len(g) > 1]
    if len(groups) > 1:
        anova = stats.f_oneway(*groups)
        kruskal = stats.kruskal(*groups)
        means = {s: float(frame.loc[frame.sentiment == s, "words"].mean()) for s in SENTIMENTS}
        longest = max(means, key=lambda k: means[k])
        tests["ANOVA: review length (words) by sentiment"] = {
            "F": float(anova.statistic), "p": float(anova.pvalue), "Kruskal-Wallis H": float(kruskal.statistic),
            "Kruskal-Wallis p": float(kruskal.pvalue), **{f"mean words, {k}": round(v, 1) for k, v in means.items()},
            "reading": f"{longest.capitalize()} reviews are the longest (mean {means[longest]:.0f} words); "
            + ("length differs by sentiment (p < 0.001, rank test agrees)." if anova.pvalue < 1e-3
               else f"the difference is {'not ' if anova.pvalue >= 0.05 else ''}significant (p = {anova.pvalue:.3g})."),
        }
    table = pd.crosstab(frame.stars, frame.sentiment)
    if table.shape[0] > 1 and table.shape[1] > 1:
        chi = stats.chi2_contingency(table.to_numpy())
        n = int(table.to_numpy().sum())
        v = float(np.sqrt(chi.statistic / (n * (min(table.shape) - 1))))
        tests["Chi-square: stars × sentiment"] = {
            "chi2": float(chi.statistic), "dof": int(chi.dof), "p": float(chi.pvalue), "Cramér's V": v,
            "reading": f"Cramér's V = {v:.2f}: sentiment is defined from the stars (1–2 negative, 3 neutral, "
            "4–5 positive), so this only confirms the labelling is consistent.",
        }
    table = pd.crosstab(frame.source, frame.stars)
    if table.shape[0] > 1 and table.shape[1] > 1:
        chi = stats.chi2_contingency(table.to_numpy())
        n = int(table.to_numpy().sum())
        v = float(np.sqrt(chi.statistic / (n * (min(table.shape) - 1))))
        share5 = (table[5] / table.sum(axis=1)).sort_values() if 5 in table else None
        tests["Chi-square: source × stars"] = {
            "chi2": float(chi.statistic), "dof": int(chi.dof), "p": float(chi.pvalue), "Cramér's V": v,
            "reading": f"The star mix differs by source (Cramér's V = {v:.2f}, p = {chi.pvalue:.2g})"
            + (f": 5★ share from {share5.iloc[0]:.0%} ({share5.index[0]}) to {share5.iloc[-1]:.0%} "
               f"({share5.index[-1]})." if share5 is not None else "."),
        }
    verified = frame.get("verified")
    has_verified = verified is not None and verified.notna().any() and frame.helpful_votes.notna().any()
    if has_verified:  # pragma: no cover - no source in ../shared/data carries both fields
        a = frame.loc[frame.verified == True, "helpful_votes"].dropna()  # noqa: E712
        b = frame.loc[frame.verified == False, "helpful_votes"].dropna()  # noqa: E712
        t = stats.ttest_ind(a, b, equal_var=False)
        tests["t-test: helpful votes by verified purchase"] = {"t": float(t.statistic), "p": float(t.pvalue),
                                                               "reading": "Welch's t-test."}
    else:
        tests["t-test: helpful votes by verified purchase"] = {
            "reading": "Not possible here: no source carries both helpful votes and a verified-purchase flag "
            "(helpful votes: Amazon Musical Instruments, SanDisk; a recommendation flag: Datafiniti).",
        }
    votes = frame.dropna(subset=["helpful_votes"])
    neg = votes.loc[votes.sentiment == "negative", "helpful_votes"]
    pos = votes.loc[votes.sentiment == "positive", "helpful_votes"]
    if len(neg) > 1 and len(pos) > 1:
        t = stats.ttest_ind(neg, pos, equal_var=False)
        more = "negative" if neg.mean() > pos.mean() else "positive"
        tests["t-test: helpful votes, negative vs positive reviews"] = {
            "t": float(t.statistic), "p": float(t.pvalue), "mean votes, negative": float(neg.mean()),
            "mean votes, positive": float(pos.mean()), "n": int(len(neg) + len(pos)),
            "reading": f"Where votes exist, {more} reviews collect more helpful votes on average "
            f"({neg.mean():.2f} vs {pos.mean():.2f} per review), "
            + ("a significant difference" if t.pvalue < 0.05 else "but the difference is not significant")
            + f" (Welch p = {t.pvalue:.2g}; votes are heavy-tailed).",
        }
    rec = frame.dropna(subset=["recommended"])
    if len(rec) and rec.recommended.nunique() > 1:
        table = pd.crosstab(rec.recommended, rec.sentiment)
        chi = stats.chi2_contingency(table.to_numpy())
        tests["Chi-square: recommends × sentiment (Datafiniti)"] = {
            "chi2": float(chi.statistic), "dof": int(chi.dof), "p": float(chi.pvalue),
            "reading": "Whether the reviewer recommends the product follows the stars "
            f"(p = {chi.pvalue:.2g}): the recommendation flag is a second, consistent label.",
        }
    return tests


def _png(fig: Any) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(frame: Any, aspect_counts: dict[str, dict[str, int]]) -> list[tuple[str, str, str]]:
    """(title, caption, base64 PNG) per figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    plt.rcParams.update({"font.size": 11})
    out: list[tuple[str, str, str]] = []

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    stars = pd.crosstab(frame.source, frame.stars)
    stars.T.plot(kind="bar", stacked=True, ax=axes[0], colormap="tab10", rot=0)
    axes[0].set_xlabel("stars")
    axes[0].set_ylabel("reviews")
    axes[0].set_title("Star distribution, by source")
    axes[0].legend(fontsize=9)
    counts = frame.sentiment.value_counts().reindex(SENTIMENTS).fillna(0)
    axes[1].bar(counts.index, counts.to_numpy(), color=[COLORS[s] for s in counts.index])
    for i, v in enumerate(counts.to_numpy()):
        axes[1].text(i, v, f"{int(v):,}\n{v / counts.sum():.0%}", ha="center", va="bottom", fontsize=10)
    axes[1].set_title("Sentiment (from stars)")
    axes[1].set_ylabel("reviews")
    axes[1].set_ylim(0, counts.max() * 1.2)
    out.append(("Ratings and sentiment", "Half the pool is 5★; neutral (3★) is the rarest class.", _png(fig)))
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    cap = float(np.percentile(frame.words, 99))
    bins = np.linspace(0, cap, 40)
    for s in SENTIMENTS:
        axes[0].hist(frame.loc[frame.sentiment == s, "words"].clip(upper=cap), bins=bins, alpha=0.55, density=True,
                     label=s, color=COLORS[s])
    axes[0].set_xlabel("words (clipped at the 99th percentile)")
    axes[0].set_ylabel("density")
    axes[0].set_title("Review length by sentiment")
    axes[0].legend()
    data = [frame.loc[frame.sentiment == s, "words"].to_numpy() for s in SENTIMENTS]
    box = axes[1].boxplot(data, tick_labels=list(SENTIMENTS), showfliers=False, patch_artist=True)
    for patch, s in zip(box["boxes"], SENTIMENTS, strict=True):
        patch.set_facecolor(COLORS[s])
        patch.set_alpha(0.5)
    axes[1].set_ylabel("words")
    axes[1].set_title("Review length by sentiment (no outliers)")
    out.append(("Text length by sentiment", "The ANOVA below tests these means.", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(12, 4.2))
    names = list(aspect_counts["weak_reviews"])
    x = np.arange(len(names))
    human = [aspect_counts["human_sentences"].get(n, 0) for n in names]
    weak = [aspect_counts["weak_reviews"][n] for n in names]
    ax.bar(x - 0.2, human, 0.4, label="human labels (laptop sentences)")
    ax.bar(x + 0.2, weak, 0.4, label="weak lexicon (reviews)")
    ax.set_xticks(x, names, rotation=25, ha="right")
    ax.set_ylabel("mentions")
    ax.set_title("Aspect frequency")
    ax.legend()
    out.append(("Aspect frequency", "value_for_money, packaging and durability have no human labels.", _png(fig)))
    plt.close(fig)

    numeric = frame[["stars", "words", "characters", "exclamations", "questions", "uppercase_share",
                     "helpful_votes", "weak_aspects"]]
    corr = numeric.corr()
    fig, ax = plt.subplots(figsize=(7.5, 6.2))
    im = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(corr)), corr.columns, rotation=35, ha="right")
    ax.set_yticks(range(len(corr)), corr.columns)
    for (i, j), v in np.ndenumerate(corr.to_numpy()):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9, color="white" if abs(v) > 0.5 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title("Correlation of review features (Pearson)")
    out.append(("Correlation heatmap", "helpful_votes only where a source has them.", _png(fig)))
    plt.close(fig)

    from wordcloud import STOPWORDS, WordCloud

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    stop = set(STOPWORDS) | {"one", "will", "also", "get", "use", "product", "would", "im", "really"}
    for ax, s in zip(axes, SENTIMENTS, strict=True):
        text = " ".join(frame.loc[frame.sentiment == s, "text"].sample(
            n=min(3000, int((frame.sentiment == s).sum())), random_state=0))
        if text.strip():
            cloud = WordCloud(width=600, height=380, background_color="white", stopwords=stop, max_words=80,
                              colormap={"negative": "Reds", "neutral": "Greys", "positive": "Greens"}[s],
                              random_state=0).generate(text)
            ax.imshow(cloud, interpolation="bilinear")
        ax.set_title(s, fontsize=14)
        ax.axis("off")
    out.append(("Word clouds by sentiment", "Up to 3,000 reviews each; common words removed.", _png(fig)))
    plt.close(fig)
    return out


def aspect_frequency(data_dir: Path | None, frame: Any) -> dict[str, dict[str, int]]:
    from reviews_mtl.contracts import ASPECT_NAMES
    from reviews_mtl.data.aspect_sources import load_aspect_sentences
    from reviews_mtl.training.lexicon import weak_vector

    sentences = [s for s in load_aspect_sentences(data_dir, include_unlabelled=False) if s.human]
    human = {n: sum(n in s.aspects for s in sentences) for n in ASPECT_NAMES}
    weak = dict.fromkeys(ASPECT_NAMES, 0)
    for text in frame.text:
        for name, hit in zip(ASPECT_NAMES, weak_vector(text), strict=True):
            weak[name] += int(hit)
    return {"human_sentences": human, "weak_reviews": weak, "n_human_sentences": {"all": len(sentences)}}


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.3f}"
    return html.escape(str(v))


def render(frame: Any, tests: dict[str, dict[str, Any]], figures: list[tuple[str, str, str]], source: str) -> str:
    by_source = frame.groupby("source").agg(reviews=("stars", "size"), mean_stars=("stars", "mean"),
                                            mean_words=("words", "mean"))
    source_rows = "".join(
        f"<tr><td>{html.escape(str(i))}</td><td>{int(r.reviews):,}</td><td>{r.mean_stars:.2f}</td>"
        f"<td>{r.mean_words:.0f}</td></tr>" for i, r in by_source.iterrows()
    )
    test_rows = []
    for name, figures_of in tests.items():
        stats_cells = ", ".join(f"{html.escape(k)} = {_value(v)}" for k, v in figures_of.items() if k != "reading")
        test_rows.append(f"<tr><td><b>{html.escape(name)}</b></td><td>{stats_cells or '–'}</td>"
                         f"<td>{html.escape(figures_of['reading'])}</td></tr>")
    images = "".join(
        f"<figure><h3>{html.escape(t)}</h3><img alt='{html.escape(t)}' src='data:image/png;base64,{img}'>"
        f"<figcaption>{html.escape(c)}</figcaption></figure>" for t, c, img in figures
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>reviews-mtl: exploratory analysis</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{padding:4px 12px;border-bottom:1px solid #ddd;text-align:left;
vertical-align:top}}img{{max-width:100%}}figure{{margin:1.5em 0}}figcaption{{color:#555}}</style></head><body>
<h1>Exploratory analysis of the review data</h1>
<p>Data: <code>{html.escape(source)}</code> — {len(frame):,} reviews after removing empty and duplicate texts.</p>
<h2>Sources</h2><table id="sources"><tr><th>source</th><th>reviews</th><th>mean stars</th><th>mean words</th></tr>
{source_rows}</table>
<h2>Statistical tests</h2><table id="tests"><tr><th>test</th><th>figures</th><th>reading</th></tr>
{"".join(test_rows)}</table>
<h2>Plots</h2>{images}</body></html>"""


def write_eda(data_dir: Path | None, output: Path) -> dict[str, Any]:
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    frame = review_frame(data_dir)
    tests = statistical_tests(frame)
    counts = aspect_frequency(data_dir, frame)
    figures = plots(frame, counts)
    page = output / "eda.html"
    page.write_text(render(frame, tests, figures, str(data_dir or "project sample")), encoding="utf-8")
    summary = {"page": str(page), "reviews": len(frame), "tests": tests, "aspects": counts}
    (output / "eda.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    logger.info("EDA written to %s", page)
    return summary
