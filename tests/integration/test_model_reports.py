"""The evaluation report and the EDA page in headless Chromium: readable tables (metadata, per-aspect F1 with
support, statistical tests each with a one-line reading) and plots large enough to read. Structure and a
screenshot, not pixels.

Skips ONLY when no Chromium is installed (Debian: ``apt-get install -y chromium``); CI installs it. Screenshots go
to ``$REVIEWS_TEST_ARTIFACTS`` when set, else to the test's tmp dir.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"),
]


def _screenshot(page: Path, out: Path, height: int = 3000) -> np.ndarray:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
             "--hide-scrollbars", f"--window-size=1200,{height}", f"--screenshot={out}", page.as_uri()],
            capture_output=True, text=True, timeout=120, check=False,
        )
    assert out.is_file(), "chromium wrote no screenshot"
    import matplotlib.image

    return np.asarray(matplotlib.image.imread(str(out)))


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("REVIEWS_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _images(page: str) -> list[np.ndarray]:
    import matplotlib.image

    return [np.asarray(matplotlib.image.imread(io.BytesIO(base64.b64decode(b)), format="png"))
            for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]


def _table(page: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert body, f"no table {table_id}"
    rows = re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
    return [[re.sub("<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh]>(.*?)</t[dh]>", r, re.S)] for r in rows]


def test_evaluation_report_is_readable(demo_model_dir: Path, tmp_path: Path) -> None:
    from reviews_mtl.training.evaluate import evaluate_artifact

    out = tmp_path / "report"
    evaluate_artifact(demo_model_dir, None, out)  # the project's sample: seconds
    page = (out / "report.html").read_text()
    assert "{&quot;" not in page and '{"model"' not in page  # no raw JSON dumps any more
    meta = dict((r[0], r[1]) for r in _table(page, "metadata") if len(r) == 2)
    assert meta["name"] == "reviews-mtl-demo" and meta["encoder"] and meta["int8"]
    stats = _table(page, "statistics")[1:]
    assert len(stats) == 2 and all(len(r) == 3 and len(r[2]) > 30 for r in stats)  # each test has its reading
    aspects = _table(page, "per-aspect")[1:]
    assert aspects and all(r[5].isdigit() for r in aspects)  # support shown
    images = _images(page)
    assert len(images) >= 4
    assert all(img.shape[1] >= 700 for img in images), [img.shape for img in images]  # legible at a glance
    shot = _screenshot(out / "report.html", _artifacts(tmp_path) / "evaluation-report.png")
    assert shot.shape[1] == 1200 and float(shot[..., :3].std()) > 0.05  # rendered, not blank


def test_eda_page_is_readable(tmp_path: Path) -> None:
    from reviews_mtl.eda import write_eda

    summary = write_eda(None, tmp_path / "eda")
    page = Path(summary["page"]).read_text()
    tests = _table(page, "tests")[1:]
    names = [r[0] for r in tests]
    assert any(n.startswith("ANOVA") for n in names) and any(n.startswith("Chi-square") for n in names)
    assert any("verified purchase" in n for n in names)
    assert all(len(r[2]) > 20 for r in tests)
    images = _images(page)
    assert len(images) == 5 and all(img.shape[1] >= 700 for img in images)
    shot = _screenshot(Path(summary["page"]), _artifacts(tmp_path) / "eda.png", height=4200)
    assert float(shot[..., :3].std()) > 0.05
