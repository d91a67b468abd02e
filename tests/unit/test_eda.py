"""``reviews-mtl eda`` on the project's sample: features, tests with readings, one page with five plots."""

from __future__ import annotations

from pathlib import Path

from reviews_mtl.eda import review_frame, statistical_tests, write_eda


def test_frame_and_tests_on_the_sample() -> None:
    frame = review_frame(None)
    assert len(frame) > 100
    assert set(frame.sentiment) <= {"negative", "neutral", "positive"}
    assert (frame.words > 0).all()
    tests = statistical_tests(frame)
    anova = tests["ANOVA: review length (words) by sentiment"]
    assert 0 <= anova["p"] <= 1 and anova["reading"]
    chi = tests["Chi-square: stars × sentiment"]
    assert abs(chi["Cramér's V"] - 1.0) < 1e-6  # sentiment is defined from stars
    assert "Not possible" in tests["t-test: helpful votes by verified purchase"]["reading"]


def test_page_written(tmp_path: Path) -> None:
    summary = write_eda(None, tmp_path)
    page = Path(summary["page"]).read_text()
    assert page.count("data:image/png;base64,") == 5
    assert '<table id="tests">' in page and (tmp_path / "eda.json").is_file()
