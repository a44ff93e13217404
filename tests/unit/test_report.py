"""The HTML report: plots embedded, labels listed, mistakes named, works offline."""
from __future__ import annotations

import base64
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from imgcls.metrics.classification import evaluate_scores
from imgcls.metrics.report import _most_confused, plot_confusion_matrix, write_report

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 0)]


def _images(tmp_path, n: int, missing: set[int] = frozenset()) -> list[str]:
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i in range(n):
        path = folder / f"img_{i:02d}.{'jpg' if i % 2 else 'png'}"
        if i not in missing:
            Image.new("RGB", (160, 120), COLOURS[i % len(COLOURS)]).save(path)
        paths.append(str(path))
    return paths


def _section(document: str, heading: str) -> str:
    """The HTML between a gallery heading and the next heading."""
    start = document.index(f"<h3>{heading}")
    end = document.find("<h3>", start + 1)
    return document[start:end if end != -1 else None]


def _assert_offline(document: str):
    assert "<script" not in document
    for url in re.findall(r'(?:src|href)="([^"]*)"', document):
        assert url.startswith("data:"), url


def _assert_plots(out_dir, document: str, names: list[str]):
    assert sorted(p.name for p in (out_dir / "plots").iterdir()) == sorted(names)
    for name in names:
        path = out_dir / "plots" / name
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 100
        assert "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() in document


@pytest.fixture
def multiclass_case(tmp_path):
    labels = ["cat", "dog", "bird"]
    classes = [0, 1, 2, 0, 1, 2, 0, 1]
    y = np.eye(3, dtype=int)[classes]
    scores = np.where(y == 1, 0.8, 0.1)
    scores[3] = [0.1, 0.85, 0.05]   # a cat called dog: false positive for dog, miss for cat
    scores[5] = [0.3, 0.3, 0.4]     # right by argmax, but below 0.5: a false negative only
    paths = _images(tmp_path, len(classes), missing={6})
    return labels, y, scores, paths


def test_multiclass_report(tmp_path, multiclass_case):
    labels, y, scores, paths = multiclass_case
    metrics = evaluate_scores(y, scores, labels, multilabel=False)
    out = tmp_path / "out"
    path = write_report(out, metrics, y, scores, labels, paths, multilabel=False, threshold=0.5,
                        title="Pets <test>", provider="local")
    assert path == out / "report.html" and path.exists()
    document = path.read_text(encoding="utf-8")
    _assert_plots(out, document, ["confusion_matrix.png", "pr_curves.png", "threshold.png"])
    _assert_offline(document)
    assert "Pets &lt;test&gt;" in document
    for label in labels:
        assert f"<td>{label}</td>" in document
    assert "img_03.jpg" in _section(document, "False positives")
    assert "img_05.jpg" not in _section(document, "False positives")
    assert "img_05.jpg" in _section(document, "False negatives")
    assert "img_03.jpg" in _section(document, "Most confident mistakes")
    assert "data:image/jpeg;base64," in document          # thumbnails embedded
    assert "image unavailable" not in document            # image 6 is correct: no card


def test_missing_image_degrades_to_placeholder(tmp_path, multiclass_case):
    labels, y, scores, paths = multiclass_case
    scores[6] = [0.05, 0.9, 0.05]    # image 6 (not on disk) becomes a mistake
    metrics = evaluate_scores(y, scores, labels, multilabel=False)
    document = write_report(tmp_path / "out", metrics, y, scores, labels, paths, False, 0.5,
                            "pets", "local").read_text(encoding="utf-8")
    section = _section(document, "False positives")
    assert "img_06.png" in section and "image unavailable" in section


def test_multilabel_report(tmp_path):
    labels = ["sky", "tree", "a&b"]
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 1]])
    scores = np.array([[0.9, 0.7, 0.6],    # a&b false positive at 0.6
                       [0.8, 0.2, 0.1],
                       [0.1, 0.3, 0.9],    # tree missed at 0.3
                       [0.2, 0.1, 0.7],
                       [0.9, 0.8, 0.8]])
    paths = _images(tmp_path, len(y))
    metrics = evaluate_scores(y, scores, labels, multilabel=True, threshold=0.5)
    out = tmp_path / "out"
    document = write_report(out, metrics, y, scores, labels, paths, multilabel=True,
                            threshold=0.5, title="Scenes", provider="vertex").read_text("utf-8")
    _assert_plots(out, document, ["pr_curves.png", "threshold.png"])
    _assert_offline(document)
    assert "<td>sky</td>" in document and "<td>tree</td>" in document
    assert "<td>a&amp;b</td>" in document and "a&b" not in document
    assert "<th>fp</th>" in document                      # per-label counts for multilabel
    fp = _section(document, "False positives")
    assert "img_00.png" in fp and "img_02.png" not in fp
    assert "img_02.png" in _section(document, "False negatives")
    # The miss at 0.3 (confidence 0.7 in the wrong answer) ranks above the 0.6 false positive.
    confident = _section(document, "Most confident mistakes")
    assert confident.index("img_02.png") < confident.index("img_00.png")


def test_many_labels_show_the_most_confused(tmp_path):
    counts = np.diag(np.full(25, 5))
    counts[3, 7] = 4
    counts[12, 20] = 2
    assert _most_confused(counts, 2).tolist() == [3, 7]
    assert _most_confused(counts, 3).tolist() == [3, 7, 12]   # ties go to label order
    assert set(_most_confused(counts, 4)) == {3, 7, 12, 20}
    rng = np.random.default_rng(0)
    y = np.eye(25, dtype=int)[rng.integers(0, 25, 100)]
    scores = rng.dirichlet(np.ones(25), 100)
    path = plot_confusion_matrix(y, scores, [f"l{i}" for i in range(25)], tmp_path / "cm.png")
    with Image.open(path) as image:
        assert image.format == "PNG"


def test_classification_and_compare_do_not_import_matplotlib():
    code = ("import sys, imgcls.metrics.classification, imgcls.metrics.compare; "
            "sys.exit('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0
