"""Every metric, per class and per node type, into one report dict (docs/architecture.md, "Run directory").

Conventions:
- Thresholded metrics (accuracy, F1, recall, confusion matrix, ...) use the *decisions*
  ``pred`` — after post-hoc calibration when a remedy fitted one on validation.
- Ranking metrics (PR-AUC, ROC-AUC) use the model's class probabilities ``prob``.
- Macro averages run over the classes present in ``y_true`` (a class absent from a split has no
  recall to average); ``per_class`` always lists every class, with ``None`` where a value is
  undefined (JSON has no NaN). ``missing_classes`` names the classes a split lacks; a binary
  split with one class only has no macro-F1, balanced accuracy or G-mean (``None``), since any
  prediction of the one class would score 1.0.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "micro_f1", "weighted_f1", "g_mean",
            "pr_auc_macro", "roc_auc_macro")


def _clean(value) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


def g_mean(recalls: np.ndarray) -> float:
    """Geometric mean of the per-class recalls (of the classes present; 0 when one is 0).

    Not ``imblearn.metrics.geometric_mean_score``: it gives the same value to ~1e-16 (tested,
    with missing classes and zero recalls) but computes ``exp(mean(log r))``, which differs from
    this product in the last bit in about a quarter of random cases (2,000 tried), and its input
    checks make it ~20x slower per call (15-20 ms vs 0.8-0.9 ms on 5,000 items, one thread)
    where :func:`quick_score` runs it every epoch."""
    return float(np.prod(recalls) ** (1.0 / len(recalls)))


def _one_vs_rest(metric, y_true: np.ndarray, scores: np.ndarray, c: int) -> Optional[float]:
    positives = y_true == c
    if positives.all() or not positives.any():  # undefined with one class present
        return None
    return _clean(metric(positives.astype(int), scores[:, c]))


def classification_report(y_true: Sequence[int], prob: np.ndarray, class_names: List[str],
                          pred: Optional[Sequence[int]] = None,
                          threshold: Optional[float] = None, minority: Optional[int] = None) -> Dict:
    """Report for one split. ``prob``: ``[N, C]`` probabilities; ``pred`` defaults to argmax.
    ``minority``: the class whose recall is reported as ``minority_recall`` — pass the smallest
    *training* class (the one the imbalance hurts); default: the smallest class in this split."""
    y_true = np.asarray(y_true, dtype=np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    num_classes = len(class_names)
    if prob.ndim != 2 or prob.shape != (len(y_true), num_classes):
        raise ValueError(f"prob has shape {prob.shape}, expected ({len(y_true)}, {num_classes})")
    pred = prob.argmax(1) if pred is None else np.asarray(pred, dtype=np.int64)
    labels = np.arange(num_classes)
    report: Dict = {"support": int(len(y_true))}
    if len(y_true) == 0:
        report.update({k: None for k in HEADLINE})
        report.update(per_class=[], confusion_matrix=np.zeros((num_classes, num_classes), int).tolist())
        return report

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, pred, labels=labels, zero_division=0)
    present = support > 0
    pr_auc = [_one_vs_rest(average_precision_score, y_true, prob, c) for c in labels]
    roc_auc = [_one_vs_rest(roc_auc_score, y_true, prob, c) for c in labels]
    present_labels = labels[present]
    recalls = recall[present]

    report["accuracy"] = _clean(accuracy_score(y_true, pred))
    report["balanced_accuracy"] = _clean(recalls.mean())
    report["macro_f1"] = _clean(f1_score(y_true, pred, labels=present_labels, average="macro", zero_division=0))
    report["micro_f1"] = _clean(f1_score(y_true, pred, labels=labels, average="micro", zero_division=0))
    report["weighted_f1"] = _clean(f1_score(y_true, pred, labels=labels, average="weighted", zero_division=0))
    report["g_mean"] = _clean(g_mean(recalls))
    defined_pr = [v for v in pr_auc if v is not None]
    defined_roc = [v for v in roc_auc if v is not None]
    report["pr_auc_macro"] = _clean(np.mean(defined_pr)) if defined_pr else None
    report["roc_auc_macro"] = _clean(np.mean(defined_roc)) if defined_roc else None
    report["per_class"] = [
        {"class": class_names[c], "support": int(support[c]),
         "precision": _clean(precision[c]) if (pred == c).any() else None,
         "recall": _clean(recall[c]) if support[c] else None,
         "f1": _clean(f1[c]) if support[c] else None,
         "pr_auc": pr_auc[c], "roc_auc": roc_auc[c]}
        for c in labels
    ]
    report["confusion_matrix"] = confusion_matrix(y_true, pred, labels=labels).tolist()
    missing = [class_names[c] for c in labels if not support[c]]
    report["missing_classes"] = missing
    if missing and num_classes == 2:
        # one class only: every prediction of it scores F1 1.0, which says nothing about the task
        for key in ("balanced_accuracy", "macro_f1", "g_mean"):
            report[key] = None
    if num_classes == 2:
        report["pr_auc"] = pr_auc[1]
        report["roc_auc"] = roc_auc[1]
        report["threshold"] = 0.5 if threshold is None else float(threshold)
    minority = minority_class(support) if minority is None else int(minority)
    report["minority_class"] = class_names[minority]
    report["minority_recall"] = _clean(recall[minority])
    report["minority_precision"] = _clean(precision[minority])
    report["minority_f1"] = _clean(f1[minority])
    return report


def minority_class(counts) -> int:
    """Index of the smallest class with at least one sample (ties: the lowest index)."""
    counts = np.asarray(counts)
    masked = np.where(counts > 0, counts, np.iinfo(np.int64).max)
    return int(masked.argmin())


def quick_score(y_true: np.ndarray, pred: np.ndarray, metric: str, num_classes: int) -> float:
    """The early-stopping metric, cheaply (no probabilities, no per-class table)."""
    labels = np.unique(y_true)
    if metric == "macro_f1":
        # sklearn's f1_score(labels=present classes, average="macro", zero_division=0) from one
        # bincount: it is called every epoch, and sklearn's validation took ~7% of a Freebase
        # RGCN epoch (equality with sklearn is tested)
        size = int(max(num_classes, y_true.max(initial=-1) + 1, pred.max(initial=-1) + 1))
        true_count = np.bincount(y_true, minlength=size)[labels]
        pred_count = np.bincount(pred, minlength=size)[labels]
        hits = np.bincount(y_true[y_true == pred], minlength=size)[labels]
        denominator = true_count + pred_count
        f1 = np.divide(2.0 * hits, denominator, out=np.zeros(len(labels)), where=denominator > 0)
        return float(f1.mean()) if len(labels) else 0.0
    if metric == "accuracy":
        return float((y_true == pred).mean())
    if metric == "acc_f1":
        return (quick_score(y_true, pred, "accuracy", num_classes) + quick_score(y_true, pred, "macro_f1", num_classes)) / 2.0
    if metric == "balanced_accuracy":
        recalls = [(pred[y_true == c] == c).mean() for c in labels]
        return float(np.mean(recalls))
    if metric == "micro_f1":
        return float(f1_score(y_true, pred, labels=np.arange(num_classes), average="micro", zero_division=0))
    if metric == "g_mean":
        return g_mean(np.array([(pred[y_true == c] == c).mean() for c in labels]))
    raise ValueError(metric)


# acc_f1: (accuracy + macro-F1) / 2, the selection rule of the GraphENS / TAM / GraphSHA code
MONITOR_METRICS = ("macro_f1", "balanced_accuracy", "accuracy", "micro_f1", "g_mean", "acc_f1",
                   "pr_auc", "roc_auc", "loss")
# threshold-free monitors (binary tasks): rank validation items by logit1 - logit0
RANKING_MONITORS = ("pr_auc", "roc_auc")


def ranking_score(y_true: np.ndarray, scores: np.ndarray, metric: str) -> float:
    """PR-AUC (average precision) or ROC-AUC of the positive class 1; 0.0 when the split has a
    single class (undefined: no epoch can be preferred on it)."""
    y_true = np.asarray(y_true)
    if y_true.size == 0 or (y_true == 1).all() or not (y_true == 1).any():
        return 0.0
    metric_fn = {"pr_auc": average_precision_score, "roc_auc": roc_auc_score}[metric]
    return float(metric_fn((y_true == 1).astype(int), np.asarray(scores, dtype=np.float64)))


def format_report(report: Dict, title: str = "") -> str:
    """A per-class table followed by the headline metrics, for the terminal."""
    lines = []
    if title:
        lines.append(title)
    if report.get("per_class"):
        width = max(8, *(len(row["class"]) for row in report["per_class"]))
        lines.append(f"  {'class':<{width}} {'support':>8} {'precision':>9} {'recall':>7} {'f1':>7} {'pr_auc':>7}")
        for row in report["per_class"]:
            cells = [f"{row[k]:.3f}" if row[k] is not None else "-" for k in ("precision", "recall", "f1", "pr_auc")]
            lines.append(f"  {row['class']:<{width}} {row['support']:>8} {cells[0]:>9} {cells[1]:>7} {cells[2]:>7} {cells[3]:>7}")
    keys = list(HEADLINE) + (["pr_auc", "roc_auc", "threshold"] if "threshold" in report else [])
    headline = [f"{k}={report[k]:.4f}" for k in keys if report.get(k) is not None]
    for i in range(0, len(headline), 4):
        lines.append("  " + "  ".join(headline[i:i + 4]))
    return "\n".join(lines)
