"""Metrics against hand-computed cases."""
import warnings

import numpy as np
import pytest

from hgimb.metrics import classification_report, format_report, minority_class, quick_score


def one_hot_probs(pred, num_classes, confidence=0.8):
    prob = np.full((len(pred), num_classes), (1 - confidence) / (num_classes - 1))
    prob[np.arange(len(pred)), pred] = confidence
    return prob


def test_hand_computed_three_class():
    y = np.array([0, 0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 0, 1, 1, 0, 2])
    report = classification_report(y, one_hot_probs(pred, 3), ["a", "b", "c"])
    # recalls: a 3/4, b 1/2, c 1/1; precisions: a 3/4, b 1/2, c 1
    assert report["accuracy"] == pytest.approx(5 / 7)
    assert report["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    f1 = [0.75, 0.5, 1.0]
    assert report["macro_f1"] == pytest.approx(np.mean(f1))
    assert report["weighted_f1"] == pytest.approx(np.average(f1, weights=[4, 2, 1]))
    assert report["micro_f1"] == pytest.approx(5 / 7)
    assert report["g_mean"] == pytest.approx((0.75 * 0.5 * 1.0) ** (1 / 3))
    assert report["confusion_matrix"] == [[3, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert [row["support"] for row in report["per_class"]] == [4, 2, 1]
    assert report["minority_class"] == "c" and report["minority_recall"] == pytest.approx(1.0)
    assert "threshold" not in report


def test_perfect_ranking_gives_auc_one():
    y = np.array([0, 1, 0, 1, 1])
    p1 = np.array([0.1, 0.9, 0.2, 0.8, 0.7])
    prob = np.stack([1 - p1, p1], 1)
    report = classification_report(y, prob, ["neg", "pos"], threshold=0.5)
    assert report["pr_auc"] == pytest.approx(1.0)
    assert report["roc_auc"] == pytest.approx(1.0)
    assert report["threshold"] == 0.5


def test_pr_auc_of_known_ranking():
    # one positive ranked second of four: AP = 1/2; ROC-AUC = 2/3
    y = np.array([0, 1, 0, 0])
    p1 = np.array([0.9, 0.8, 0.3, 0.1])
    report = classification_report(y, np.stack([1 - p1, p1], 1), ["neg", "pos"])
    assert report["pr_auc"] == pytest.approx(0.5)
    assert report["roc_auc"] == pytest.approx(2 / 3)


def test_class_absent_from_split_does_not_crash():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    report = classification_report(y, one_hot_probs(pred, 3), ["a", "b", "c"])
    absent = report["per_class"][2]
    assert absent["support"] == 0 and absent["recall"] is None and absent["pr_auc"] is None
    # macro averages over present classes only
    assert report["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    assert report["macro_f1"] == pytest.approx(np.mean([2 / 3, 0.8]))


def test_empty_split_and_shape_check():
    report = classification_report(np.array([], int), np.zeros((0, 2)), ["a", "b"])
    assert report["macro_f1"] is None and report["support"] == 0
    with pytest.raises(ValueError):
        classification_report(np.array([0, 1]), np.zeros((2, 3)), ["a", "b"])


def test_quick_score_matches_report():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
    report = classification_report(y, one_hot_probs(pred, 4), list("abcd"))
    for key in ("macro_f1", "balanced_accuracy", "accuracy", "g_mean"):
        assert quick_score(y, pred, key, 4) == pytest.approx(report[key])


def test_minority_class_and_format():
    assert minority_class([5, 0, 2, 2]) == 2
    y = np.array([0, 1, 1])
    text = format_report(classification_report(y, one_hot_probs(y, 2), ["x", "y"]), title="test:")
    assert "macro_f1=1.0000" in text and "x" in text


def test_minority_recall_follows_the_given_training_minority():
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 1, 2, 2, 2])
    report = classification_report(y, one_hot_probs(pred, 3), ["a", "b", "c"], minority=0)
    assert report["minority_class"] == "a" and report["minority_recall"] == pytest.approx(0.5)


def test_quick_macro_f1_equals_sklearn_on_random_and_edge_cases():
    import numpy as np
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    cases = [(rng.integers(0, 5, 200), rng.integers(0, 5, 200)) for _ in range(50)]
    cases += [(rng.integers(0, 3, 50), rng.integers(0, 5, 50)),  # predictions of absent classes
              (np.array([2, 2, 2]), np.array([0, 1, 2])), (np.array([1, 1]), np.array([0, 0])),
              (np.zeros(4, dtype=int), np.zeros(4, dtype=int))]
    for y, pred in cases:
        expected = f1_score(y, pred, labels=np.unique(y), average="macro", zero_division=0)
        assert quick_score(y, pred, "macro_f1", 5) == pytest.approx(expected, abs=1e-12)


def test_g_mean_agrees_with_imbalanced_learn():
    """hgimb keeps its own G-mean (bit-exact product, cheap per epoch; see metrics.g_mean) but it is
    imbalanced-learn's multiclass G-mean over the classes present, missing classes and zero recalls included."""
    imblearn_metrics = pytest.importorskip("imblearn.metrics")
    rng = np.random.default_rng(0)
    cases = [
        (np.array([0, 0, 0, 0, 1, 1, 2]), np.array([0, 0, 0, 1, 1, 0, 2]), 3),  # hand-computed above
        (np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 3),  # class 2 missing from the split
        (np.array([0, 0, 1, 1, 2]), np.array([0, 0, 0, 0, 2]), 3),  # class 1 recall 0
        (np.array([0, 1, 1, 1]), np.array([3, 1, 1, 0]), 4),  # a predicted class absent from the truth
    ]
    for _ in range(50):
        num_classes = int(rng.integers(2, 6))
        y = rng.integers(0, num_classes, 60)
        cases.append((y, np.where(rng.random(60) < 0.5, y, rng.integers(0, num_classes, 60)), num_classes))
    for y, pred, num_classes in cases:
        report = classification_report(y, one_hot_probs(pred, num_classes), [str(c) for c in range(num_classes)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = imblearn_metrics.geometric_mean_score(y, pred, labels=np.unique(y))
        assert report["g_mean"] == pytest.approx(expected, abs=1e-12)
        assert quick_score(y, pred, "g_mean", num_classes) == pytest.approx(expected, abs=1e-12)
