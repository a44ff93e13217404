"""Metrics: hand-computed cases, agreement with scikit-learn, and the edge cases."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from imgcls.errors import ConfigError, DataError
from imgcls.metrics.classification import (
    accuracy,
    average_precision,
    confusion_matrix,
    correct_predictions,
    evaluate_scores,
    log_loss,
    precision_recall_curve,
    precision_recall_fscore,
    predict_at,
    threshold_table,
)

# --- hand-computed multiclass case -------------------------------------------------------------
# 4 images, true: cat, dog, dog, bird. Argmax: cat, cat, dog, dog -> accuracy 2/4.
# Pairs with score >= 0.5: (0,cat .7) (1,cat .6) (2,dog .8) (3,dog .5).
#   cat: tp 1 fp 1 fn 0 -> P .5  R 1   F1 2/3
#   dog: tp 1 fp 1 fn 1 -> P .5  R .5  F1 .5
#   bird: never predicted -> P 0 R 0 F1 0
MC_LABELS = ["cat", "dog", "bird"]
MC_TRUE = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])
MC_SCORE = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3]])

# --- hand-computed multilabel case -------------------------------------------------------------
# Label c is never present but predicted once (image 1). Predictions at 0.5:
#   [[1,0,0],[0,1,1],[0,0,0],[0,1,0]] -> only image 3 matches exactly -> subset accuracy 1/4.
#   a: tp 1 fp 0 fn 1 -> P 1 R .5  F1 2/3 ; b: tp 2 fp 0 fn 1 -> P 1 R 2/3 F1 .8 ; c: tp 0 fp 1 -> 0
ML_LABELS = ["a", "b", "c"]
ML_TRUE = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
ML_SCORE = np.array([[0.9, 0.4, 0.1], [0.2, 0.7, 0.6], [0.3, 0.1, 0.2], [0.1, 0.8, 0.2]])


def test_multiclass_hand_case_accuracy_and_log_loss():
    assert accuracy(MC_TRUE, MC_SCORE, multilabel=False) == 0.5
    expected = -(math.log(0.7) + math.log(0.3) + math.log(0.8) + math.log(0.3)) / 4
    assert log_loss(MC_TRUE, MC_SCORE, multilabel=False) == pytest.approx(expected)
    assert expected == pytest.approx(0.746941, abs=1e-6)


def test_multiclass_log_loss_normalises_rows():
    # Scores 0.2/0.2 normalise to 0.5/0.5: loss ln 2, not -ln 0.2.
    loss = log_loss([[1, 0]], [[0.2, 0.2]], multilabel=False)
    assert loss == pytest.approx(math.log(2))


def test_log_loss_clips_impossible_answers_at_1e_15():
    # -ln(1e-15) = 34.5388: a confident wrong answer costs a lot but stays finite.
    assert log_loss([[1, 0]], [[0.0, 1.0]], multilabel=False) == pytest.approx(34.538776, abs=1e-5)
    assert log_loss([[1, 0]], [[0.0, 0.0]], multilabel=True) == pytest.approx(34.538776 / 2, abs=1e-5)


def test_multiclass_hand_case_confusion_matrix():
    expected = [[1, 0, 0],   # cat -> cat
                [1, 1, 0],   # dog -> cat, dog
                [0, 1, 0]]   # bird -> dog
    assert confusion_matrix(MC_TRUE, MC_SCORE).tolist() == expected


def test_multiclass_hand_case_precision_recall_f1():
    p, r, f, s = precision_recall_fscore(MC_TRUE, predict_at(MC_SCORE, 0.5))
    np.testing.assert_allclose(p, [0.5, 0.5, 0.0])
    np.testing.assert_allclose(r, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(f, [2 / 3, 0.5, 0.0])
    assert s.tolist() == [1, 2, 1]
    micro = precision_recall_fscore(MC_TRUE, predict_at(MC_SCORE, 0.5), average="micro")
    assert micro[:3] == pytest.approx((0.5, 0.5, 0.5))  # tp 2, fp 2, fn 2
    macro = precision_recall_fscore(MC_TRUE, predict_at(MC_SCORE, 0.5), average="macro")
    assert macro[:3] == pytest.approx((1 / 3, 0.5, 7 / 18))


def test_average_precision_hand_cases():
    # dog: ranked .8(+) .5(-) .3(+) .2(-): 0.5 * 1 + 0.5 * 2/3
    assert average_precision([0, 1, 1, 0], [0.2, 0.3, 0.8, 0.5]) == pytest.approx(5 / 6)
    # perfect ranking
    assert average_precision([1, 0, 0, 0], [0.7, 0.6, 0.1, 0.2]) == 1.0
    # tie between a positive and a negative at the top: precision 1/2 at recall 1
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert math.isnan(average_precision([0, 0, 0], [0.1, 0.5, 0.9]))


def test_precision_recall_curve_hand_case():
    precision, recall, thresholds = precision_recall_curve([0, 1, 1, 0], [0.2, 0.3, 0.8, 0.5])
    np.testing.assert_allclose(thresholds, [0.2, 0.3, 0.5, 0.8])
    np.testing.assert_allclose(precision, [0.5, 2 / 3, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(recall, [1.0, 1.0, 0.5, 0.5, 0.0])


def test_threshold_table_hand_case():
    rows = {row["threshold"]: row for row in threshold_table(MC_TRUE, MC_SCORE)}
    assert len(rows) == 21 and 0.15 in rows  # rounded, not 0.15000000000000002
    # >= 0.3: six pairs predicted, four of them true, every true pair found
    assert (rows[0.3]["precision"], rows[0.3]["recall"]) == pytest.approx((2 / 3, 1.0))
    assert rows[0.3]["f1"] == pytest.approx(0.8)
    assert (rows[0.0]["precision"], rows[0.0]["recall"]) == pytest.approx((4 / 12, 1.0))
    assert (rows[1.0]["precision"], rows[1.0]["recall"], rows[1.0]["f1"]) == (0.0, 0.0, 0.0)


def test_predict_at_is_inclusive_and_accepts_per_label_thresholds():
    assert predict_at([[0.5, 0.49]], 0.5).tolist() == [[1, 0]]
    assert predict_at([[0.5, 0.49]], [0.6, 0.4]).tolist() == [[0, 1]]
    with pytest.raises(ConfigError):
        predict_at([[0.5, 0.49]], [0.6, 0.4, 0.1])


def test_evaluate_multiclass_hand_case():
    m = evaluate_scores(MC_TRUE, MC_SCORE, MC_LABELS, multilabel=False)
    assert (m["n_images"], m["task"], m["threshold"]) == (4, "multiclass", 0.5)
    assert m["accuracy"] == 0.5
    assert m["micro"]["precision"] == pytest.approx(0.5)
    assert m["micro"]["auprc"] == pytest.approx(5 / 6)  # pooled pairs, ties at .3 both positive
    assert m["macro"]["f1"] == pytest.approx(7 / 18)
    assert m["per_label"]["dog"] == pytest.approx({
        "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "predicted": 2,
        "auprc": 5 / 6, "threshold": 0.5})
    assert m["per_label"]["bird"]["predicted"] == 0 and m["per_label"]["bird"]["auprc"] == 1.0
    assert m["confusion_matrix"] == {"labels": MC_LABELS,
                                     "matrix": [[1, 0, 0], [1, 1, 0], [0, 1, 0]]}
    assert m["warnings"] == [("label 'bird' never predicted at threshold 0.5 "
                              "(precision reported as 0.0)")]
    json.dumps(m, allow_nan=False)


def test_evaluate_multilabel_hand_case_with_absent_label():
    m = evaluate_scores(ML_TRUE, ML_SCORE, ML_LABELS, multilabel=True)
    assert m["task"] == "multilabel"
    assert m["accuracy"] == 0.25
    assert (m["micro"]["precision"], m["micro"]["recall"], m["micro"]["f1"]) == pytest.approx(
        (0.75, 0.6, 2 / 3))  # tp 3, fp 1, fn 2
    assert (m["macro"]["precision"], m["macro"]["recall"], m["macro"]["f1"]) == pytest.approx(
        (2 / 3, 7 / 18, (2 / 3 + 0.8) / 3))
    assert m["per_label"]["b"]["f1"] == pytest.approx(0.8)
    c = m["per_label"]["c"]
    assert (c["support"], c["predicted"], c["recall"], c["auprc"]) == (0, 1, 0.0, None)
    assert m["confusion_matrix"]["per_label"] == {
        "a": {"tn": 2, "fp": 0, "fn": 1, "tp": 1},
        "b": {"tn": 1, "fp": 0, "fn": 1, "tp": 2},
        "c": {"tn": 3, "fp": 1, "fn": 0, "tp": 0}}
    # 12 pairs: -ln of .9 x4, .4 x2, .8 x4, .7, .3
    expected_loss = -(4 * math.log(0.9) + 2 * math.log(0.4) + 4 * math.log(0.8)
                      + math.log(0.7) + math.log(0.3)) / 12
    assert m["log_loss"] == pytest.approx(expected_loss)
    assert expected_loss == pytest.approx(0.392270, abs=1e-6)
    assert m["warnings"] == [("label 'c' not in the test split "
                              "(recall reported as 0.0, AuPRC as null)")]
    json.dumps(m, allow_nan=False)


def test_per_label_thresholds_change_predictions_and_accuracy():
    m = evaluate_scores(ML_TRUE, ML_SCORE, ML_LABELS, multilabel=True,
                        per_label_thresholds={"b": 0.3, "c": 0.7})
    # b at .3 catches image 0 (.4); c at .7 drops image 1's false positive (.6): 3 of 4 exact.
    assert m["accuracy"] == 0.75
    assert m["per_label"]["b"]["recall"] == 1.0 and m["per_label"]["b"]["threshold"] == 0.3
    assert m["per_label"]["a"]["threshold"] == 0.5
    assert m["per_label"]["c"]["predicted"] == 0
    assert "label 'c' never predicted at threshold 0.7 (precision reported as 0.0)" in m["warnings"]
    assert m["threshold"] == 0.5


def test_unknown_or_out_of_range_per_label_threshold_is_a_config_error():
    with pytest.raises(ConfigError, match="zebra"):
        evaluate_scores(ML_TRUE, ML_SCORE, ML_LABELS, True, per_label_thresholds={"zebra": 0.3})
    with pytest.raises(ConfigError):
        evaluate_scores(ML_TRUE, ML_SCORE, ML_LABELS, True, per_label_thresholds={"a": 1.3})


def test_all_correct():
    y = np.eye(3, dtype=int)[[0, 1, 2, 1]]
    scores = np.where(y == 1, 0.9, 0.05)
    m = evaluate_scores(y, scores, MC_LABELS, multilabel=False)
    assert m["accuracy"] == 1.0
    assert m["micro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "auprc": 1.0}
    assert m["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert all(row["auprc"] == 1.0 for row in m["per_label"].values())
    assert m["confusion_matrix"]["matrix"] == [[1, 0, 0], [0, 2, 0], [0, 0, 1]]
    assert m["warnings"] == []
    assert m["log_loss"] == pytest.approx(-math.log(0.9 / 1.0))


def test_single_image():
    m = evaluate_scores([[0, 1]], [[0.3, 0.7]], ["x", "y"], multilabel=False)
    assert (m["n_images"], m["accuracy"]) == (1, 1.0)
    assert m["per_label"]["x"]["auprc"] is None and m["per_label"]["y"]["auprc"] == 1.0
    assert m["warnings"] == ["label 'x' not in the test split (recall reported as 0.0, AuPRC as null)",
                             "label 'x' never predicted at threshold 0.5 (precision reported as 0.0)"]
    m = evaluate_scores([[1, 1]], [[0.6, 0.4]], ["x", "y"], multilabel=True)
    assert m["accuracy"] == 0.0 and m["micro"]["recall"] == 0.5
    json.dumps(m, allow_nan=False)


def test_argmax_accuracy_differs_from_automl_precision_at_threshold():
    # Argmax is right, yet no pair clears 0.5, so recall at the threshold is 0.
    m = evaluate_scores([[1, 0, 0]], [[0.4, 0.35, 0.25]], MC_LABELS, multilabel=False)
    assert m["accuracy"] == 1.0
    assert m["micro"]["recall"] == 0.0


def test_correct_predictions_per_image():
    assert correct_predictions(MC_TRUE, MC_SCORE, False).tolist() == [True, False, True, False]
    assert correct_predictions(ML_TRUE, ML_SCORE, True).tolist() == [False, False, False, True]


@pytest.mark.parametrize("y_true, y_score, match", [
    ([[1, 1, 0]], [[0.5, 0.4, 0.1]], "exactly one"),
    ([[0, 0, 0]], [[0.5, 0.4, 0.1]], "exactly one"),
    ([[1, 0, 0]], [[1.5, 0.4, 0.1]], r"not in \[0, 1\]"),
    ([[1, 0, 0]], [[np.nan, 0.4, 0.1]], r"not in \[0, 1\]"),
    ([[1, 0]], [[0.5, 0.5]], "labels"),
    (np.zeros((0, 3)), np.zeros((0, 3)), "no images"),
])
def test_bad_input_is_a_data_error(y_true, y_score, match):
    with pytest.raises(DataError, match=match):
        evaluate_scores(y_true, y_score, MC_LABELS, multilabel=False)


# --- agreement with scikit-learn on random data ------------------------------------------------

@pytest.fixture
def multiclass_data():
    rng = np.random.default_rng(0)
    n, n_labels = 300, 5
    classes = rng.integers(0, n_labels, n)
    y = np.eye(n_labels, dtype=int)[classes]
    # Rounded to two decimals so ties exercise the step-wise AP.
    scores = np.round(rng.dirichlet(np.ones(n_labels), n) * 0.6 + y * 0.4, 2)
    scores = scores / scores.sum(axis=1, keepdims=True)
    return classes, y, scores


@pytest.fixture
def multilabel_data():
    rng = np.random.default_rng(1)
    y = (rng.random((250, 6)) < 0.3).astype(int)
    scores = np.round(np.clip(0.35 * y + 0.65 * rng.random(y.shape), 0, 1), 2)
    return y, scores


def test_multiclass_agrees_with_sklearn(multiclass_data):
    classes, y, scores = multiclass_data
    predicted = scores.argmax(axis=1)
    assert accuracy(y, scores, False) == pytest.approx(skm.accuracy_score(classes, predicted))
    assert log_loss(y, scores, False) == pytest.approx(skm.log_loss(classes, scores, labels=range(5)))
    np.testing.assert_array_equal(confusion_matrix(y, scores),
                                  skm.confusion_matrix(classes, predicted, labels=range(5)))
    one_hot = np.eye(5, dtype=int)[predicted]
    for average in (None, "micro", "macro"):
        ours = precision_recall_fscore(y, one_hot, average=average)
        theirs = skm.precision_recall_fscore_support(classes, predicted, labels=range(5),
                                                     average=average, zero_division=0)
        for a, b in zip(ours[:3], theirs[:3]):
            np.testing.assert_allclose(a, b)


def test_average_precision_and_curve_agree_with_sklearn(multiclass_data):
    _, y, scores = multiclass_data
    for j in range(y.shape[1]):
        assert average_precision(y[:, j], scores[:, j]) == pytest.approx(
            skm.average_precision_score(y[:, j], scores[:, j]))
        for ours, theirs in zip(precision_recall_curve(y[:, j], scores[:, j]),
                                skm.precision_recall_curve(y[:, j], scores[:, j])):
            np.testing.assert_allclose(ours, theirs)
    m = evaluate_scores(y, scores, list("abcde"), multilabel=False)
    assert m["micro"]["auprc"] == pytest.approx(skm.average_precision_score(y, scores, average="micro"))


def test_multilabel_agrees_with_sklearn(multilabel_data):
    y, scores = multilabel_data
    y_pred = predict_at(scores, 0.45)
    assert accuracy(y, scores, True, 0.45) == pytest.approx(skm.accuracy_score(y, y_pred))
    expected_loss = np.mean([skm.log_loss(y[:, j], scores[:, j], labels=[0, 1])
                             for j in range(y.shape[1])])
    assert log_loss(y, scores, True) == pytest.approx(expected_loss)
    np.testing.assert_array_equal(confusion_matrix(y, scores, True, 0.45),
                                  skm.multilabel_confusion_matrix(y, y_pred))
    for average in (None, "micro", "macro"):
        ours = precision_recall_fscore(y, y_pred, average=average)
        theirs = skm.precision_recall_fscore_support(y, y_pred, average=average, zero_division=0)
        for a, b in zip(ours[:3], theirs[:3]):
            np.testing.assert_allclose(a, b)
    for j in range(y.shape[1]):
        assert average_precision(y[:, j], scores[:, j]) == pytest.approx(
            skm.average_precision_score(y[:, j], scores[:, j]))


def test_absent_and_never_predicted_labels_agree_with_sklearn_zero_division(multilabel_data):
    y, scores = multilabel_data
    y = y.copy()
    y[:, 2] = 0                      # never present
    y_pred = predict_at(scores, 0.45)
    y_pred[:, 4] = 0                 # never predicted
    ours = precision_recall_fscore(y, y_pred)
    theirs = skm.precision_recall_fscore_support(y, y_pred, zero_division=0)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b)
    assert ours.recall[2] == 0.0 and ours.support[2] == 0
    assert ours.precision[4] == 0.0
    macro = precision_recall_fscore(y, y_pred, average="macro")
    assert macro.recall == pytest.approx(
        skm.recall_score(y, y_pred, average="macro", zero_division=0))


def test_accuracy_comes_with_a_bootstrap_interval_that_narrows_with_more_images():
    rng = np.random.default_rng(1)

    def interval(n):
        truth = rng.integers(0, 3, n)
        score = np.eye(3)[np.where(rng.random(n) < 0.9, truth, (truth + 1) % 3)] * 0.8 + 0.1 / 3
        m = evaluate_scores(np.eye(3)[truth], score, ["a", "b", "c"], multilabel=False)
        lo, hi = m["accuracy_ci95"]
        assert lo <= m["accuracy"] <= hi
        return hi - lo

    small, large = interval(100), interval(2500)
    assert 0.08 < small < 0.15  # about 2 x 1.96 x sqrt(0.09 / 100) = 0.118
    assert large < small / 3
