"""Run comparison: McNemar by hand and against scipy, paired bootstrap, the comparison dict."""
from __future__ import annotations

import json

import numpy as np
import pytest

from imgcls.errors import DataError
from imgcls.metrics.classification import correct_predictions, evaluate_scores
from imgcls.metrics.compare import compare_metrics, mcnemar, paired_bootstrap_ci


def _pairs(b01: int, b10: int, both_right: int = 5, both_wrong: int = 3):
    """Correctness lists with the given discordant counts (b01: a wrong, b right)."""
    a = [False] * b01 + [True] * b10 + [True] * both_right + [False] * both_wrong
    b = [True] * b01 + [False] * b10 + [True] * both_right + [False] * both_wrong
    return a, b


@pytest.mark.parametrize("b01, b10, p", [
    (0, 10, 2 / 1024),                          # 2 * C(10,0) / 2^10 = 0.001953125
    (10, 0, 2 / 1024),                          # symmetric
    (3, 7, 2 * (1 + 10 + 45 + 120) / 1024),     # 0.34375
    (5, 5, 1.0),                                # capped at 1
    (0, 0, 1.0),                                # no discordant pairs: no evidence
    (0, 1, 1.0),                                # 2 * 1/2
])
def test_mcnemar_exact_hand_cases(b01, b10, p):
    result = mcnemar(*_pairs(b01, b10))
    assert (result["b01"], result["b10"], result["method"]) == (b01, b10, "exact")
    assert result["p_value"] == pytest.approx(p)
    assert result["statistic"] == min(b01, b10)


def test_mcnemar_zero_vs_ten_is_about_0_00195():
    assert mcnemar(*_pairs(0, 10))["p_value"] == pytest.approx(0.00195, abs=1e-5)


def test_mcnemar_chi_square_hand_case():
    # b01 + b10 = 40 >= 25: statistic (|10 - 30| - 1)^2 / 40 = 9.025, p = P(chi2_1 > 9.025)
    result = mcnemar(*_pairs(10, 30))
    assert result["method"] == "chi2"
    assert result["statistic"] == pytest.approx(9.025)
    assert result["p_value"] == pytest.approx(0.0026631, rel=1e-4)


def test_mcnemar_equal_discordant_counts_give_p_one_in_chi_square_regime():
    result = mcnemar(*_pairs(20, 20))
    assert (result["statistic"], result["p_value"]) == (0.0, 1.0)


@pytest.mark.parametrize("b01, b10", [(2, 9), (11, 13), (12, 13), (30, 45), (4, 60)])
def test_mcnemar_agrees_with_scipy(b01, b10):
    stats = pytest.importorskip("scipy.stats")
    result = mcnemar(*_pairs(b01, b10))
    if b01 + b10 < 25:
        expected = stats.binomtest(b01, b01 + b10, 0.5).pvalue
    else:
        expected = stats.chi2.sf((abs(b01 - b10) - 1) ** 2 / (b01 + b10), 1)
    assert result["p_value"] == pytest.approx(expected, rel=1e-9)


def test_bootstrap_contains_estimate_and_is_deterministic_by_seed():
    rng = np.random.default_rng(7)
    a = rng.random(200) < 0.8
    b = rng.random(200) < 0.7
    diff, lo, hi = paired_bootstrap_ci(a, b, seed=3)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert lo < diff < hi
    assert hi - lo < 0.3
    assert paired_bootstrap_ci(a, b, seed=3) == (diff, lo, hi)
    assert paired_bootstrap_ci(a, b, seed=4) != (diff, lo, hi)


def test_bootstrap_of_identical_runs_is_zero_and_pairing_narrows_the_interval():
    a = [True, False, True, True, False] * 20
    assert paired_bootstrap_ci(a, a) == (0.0, 0.0, 0.0)
    # b loses 4 images a got right: the paired interval (about +-0.04) is far narrower than
    # the 95% interval of either accuracy on its own (width about 0.19 at n=100, p=0.6).
    b = list(a)
    for i in (0, 2, 3, 5):
        b[i] = not b[i]
    diff, lo, hi = paired_bootstrap_ci(a, b, n_boot=500)
    assert diff == pytest.approx(0.04)
    assert hi - lo <= 0.1


def test_bootstrap_needs_paired_results():
    with pytest.raises(DataError, match="same test images"):
        paired_bootstrap_ci([True, False], [True])
    with pytest.raises(DataError):
        mcnemar([], [])


def _run(name, y_true, y_score, labels, **extra):
    return {"name": name, "provider": extra.get("provider", "local"),
            "metrics": evaluate_scores(y_true, y_score, labels, multilabel=False),
            "correct": correct_predictions(y_true, y_score, False).tolist(),
            "train_seconds": extra.get("train_seconds"), "cost": extra.get("cost")}


def test_compare_metrics_table_deltas_and_pairwise():
    rng = np.random.default_rng(0)
    labels = ["cat", "dog", "bird"]
    y = np.eye(3, dtype=int)[rng.integers(0, 3, 60)]
    good = np.clip(0.7 * y + 0.3 * rng.random(y.shape), 0, 1)
    noisy = rng.random(y.shape)
    runs = [_run("local", y, good, labels, train_seconds=12.5),
            _run("vertex", y, noisy, labels, provider="vertex", cost=3.2)]
    result = compare_metrics(runs)
    json.dumps(result, allow_nan=False)
    assert result["baseline"] == "local" and result["n_images"] == 60
    assert [row["name"] for row in result["table"]] == ["local", "vertex"]
    assert result["table"][0]["train_seconds"] == 12.5 and result["table"][1]["cost"] == 3.2
    assert result["table"][1]["provider"] == "vertex"
    deltas = result["per_label_f1_delta"]["vertex"]
    assert set(deltas) == set(labels)
    expected = (runs[1]["metrics"]["per_label"]["dog"]["f1"]
                - runs[0]["metrics"]["per_label"]["dog"]["f1"])
    assert deltas["dog"] == pytest.approx(expected)
    (pair,) = result["pairwise"]
    acc_diff = runs[1]["metrics"]["accuracy"] - runs[0]["metrics"]["accuracy"]
    assert pair["accuracy_diff"] == pytest.approx(acc_diff) and acc_diff < 0
    assert pair["ci_low"] <= pair["accuracy_diff"] <= pair["ci_high"]
    assert pair["mcnemar"] == mcnemar(runs[1]["correct"], runs[0]["correct"])
    assert pair["mcnemar"]["p_value"] < 0.05


def test_compare_metrics_rejects_mismatched_runs_and_duplicate_names():
    labels = ["x", "y"]
    y = np.array([[1, 0], [0, 1], [1, 0]])
    s = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    with pytest.raises(DataError, match="same test split"):
        compare_metrics([_run("a", y, s, labels), _run("b", y[:2], s[:2], labels)])
    with pytest.raises(DataError, match="unique"):
        compare_metrics([_run("a", y, s, labels), _run("a", y, s, labels)])
    single = compare_metrics([_run("a", y, s, labels)])
    assert single["pairwise"] == [] and single["per_label_f1_delta"] == {}
