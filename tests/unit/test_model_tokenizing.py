"""Head truncation reads a long review only as far as its tokens reach, and gives exactly the ids of the whole text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from reviews_mtl.model.artifact import TOKENIZER_FILE
from reviews_mtl.model.predictor import HEAD_CHARS_PER_TOKEN, encode_ids

MAX_LENGTH = 16
LIMIT = HEAD_CHARS_PER_TOKEN * MAX_LENGTH

# Words and separators that stress the cut: long words ([UNK] past 100 characters), punctuation runs, accents,
# CJK characters (each its own token), whitespace other than a space, control characters, emoji.
_WORDS = st.sampled_from(["great", "battery", "a", "!!!", "...", "café", "naïve", "充电", "x" * 120,
                          "unbelievably-long-hyphenated-thing", "\u00a0", "\t", "\n", "🙂", "\u0007", "2.5mm",
                          "don't", "price/quality"])
_TEXTS = st.lists(_WORDS, min_size=0, max_size=120).map(" ".join) | st.text(max_size=600)


def _whole(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """The reference: the whole text tokenized and truncated by the tokenizer itself."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_LENGTH)
    return [e.ids for e in tokenizer.encode_batch(texts)]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    return Tokenizer.from_file(str(tiny_model_dir / TOKENIZER_FILE))


def test_the_artifacts_tokenizer_takes_the_cut_path(tokenizer: Any) -> None:
    # Else the property below would compare the reference with itself.
    assert type(tokenizer.pre_tokenizer).__name__ == "BertPreTokenizer"


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(_TEXTS, min_size=1, max_size=8))
def test_cut_texts_give_the_whole_texts_ids(tokenizer: Any, texts: list[str]) -> None:
    assert encode_ids(tokenizer, texts, MAX_LENGTH) == _whole(tokenizer, texts)


@pytest.mark.parametrize("text", [
    "word " * 1000,                              # cut, budget filled
    "x" * 3 * LIMIT,                             # no space to cut at
    "x" * 101 + " " + "y" * 2 * LIMIT,           # one [UNK] then a word past the limit: the cut runs short
    ("\u00a0" * (LIMIT - 2)) + " tail words",    # only non-breaking spaces before the limit
    "short",
    "",
])
def test_edge_cases_equal_the_whole_text(tokenizer: Any, text: str) -> None:
    assert encode_ids(tokenizer, [text], MAX_LENGTH) == _whole(tokenizer, [text])
