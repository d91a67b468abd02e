"""The TF-IDF + logistic-regression baseline, trained and scored on exactly the model's splits.

Sentiment: one multinomial LR (balanced classes). Rating: a 5-class LR whose expected star is the
prediction. Aspects: one LR per aspect on the training sentences' labelled cells (human first, weak
where that is all there is), thresholds tuned on validation like the model's.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from reviews_mtl.contracts import ASPECT_NAMES
from reviews_mtl.training.datasets import Datasets, TaskRows
from reviews_mtl.training.scoring import SplitOutputs, score_split, tune_split_thresholds

logger = logging.getLogger(__name__)


def _vectorizer() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=50_000, sublinear_tf=True, dtype=np.float32)


class TfidfBaseline:
    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.review_vec = _vectorizer()
        self.aspect_vec = _vectorizer()
        self.sentiment: Any = None
        self.stars: Any = None
        self.aspects: dict[int, Any] = {}
        self.constant: dict[int, float] = {}

    def fit(self, reviews: TaskRows, aspects: TaskRows) -> TfidfBaseline:
        from sklearn.linear_model import LogisticRegression

        x = self.review_vec.fit_transform(reviews.texts)
        self.sentiment = LogisticRegression(max_iter=500, C=4.0, class_weight="balanced").fit(x, reviews.sentiment)
        self.stars = LogisticRegression(max_iter=500, C=4.0).fit(x, reviews.stars)
        xa = self.aspect_vec.fit_transform(aspects.texts)
        for j in range(len(ASPECT_NAMES)):
            w = aspects.aspect_weight[:, j]
            rows = w >= 1.0 if (w >= 1.0).any() else w > 0
            y = aspects.aspects[rows, j].astype(int)
            if len(np.unique(y)) < 2:
                self.constant[j] = float(y.mean()) if len(y) else 0.0
                continue
            self.aspects[j] = LogisticRegression(max_iter=500, C=4.0, class_weight="balanced").fit(xa[rows], y)
        return self

    def star_probs(self, texts: list[str]) -> np.ndarray:
        """(n, 5) star probabilities (columns 1..5; a star absent from training gets 0)."""
        star_p = self.stars.predict_proba(self.review_vec.transform(texts))
        out = np.zeros((len(texts), 5))
        out[:, self.stars.classes_.astype(int) - 1] = star_p
        return out

    def predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = self.review_vec.transform(texts)
        sentiment = self.sentiment.predict_proba(x)
        star_p = self.stars.predict_proba(x)
        rating = star_p @ self.stars.classes_.astype(float)
        xa = self.aspect_vec.transform(texts)
        aspects = np.zeros((len(texts), len(ASPECT_NAMES)))
        for j in range(len(ASPECT_NAMES)):
            if j in self.aspects:
                aspects[:, j] = self.aspects[j].predict_proba(xa)[:, 1]
            else:
                aspects[:, j] = self.constant.get(j, 0.0)
        return sentiment, rating, aspects


def run_baseline(data: Datasets) -> dict[str, Any]:
    """Fit on the training split, tune aspect thresholds on validation, score validation and test."""
    model = TfidfBaseline().fit(data.train_reviews, data.train_aspects)
    results: dict[str, Any] = {"name": "tfidf-logreg"}
    thresholds: dict[str, float] | None = None
    for split, reviews, sentences in (
        ("validation", data.validation_reviews, data.validation_sentences),
        ("test", data.test_reviews, data.test_sentences),
    ):
        s_probs, rating, _ = model.predict(reviews.texts)
        _, _, a_probs = model.predict(sentences.texts)
        outputs = SplitOutputs(s_probs, rating, a_probs, review_stars=model.star_probs(reviews.texts))
        if thresholds is None:  # validation comes first
            thresholds = tune_split_thresholds(outputs, reviews, sentences)
        results[split] = score_split(outputs, reviews, sentences, thresholds)
    results["thresholds"] = thresholds
    return results
