"""Honest validation scores for runs whose remedy has post-hoc parts (``threshold``, ...).

A post-hoc part is fitted on the validation split and then scored on that same split, so its
validation metrics are in-sample: a ``threshold`` run's validation macro-F1 is the maximum of
that very quantity over the fitted offsets. Ranking remedies by such a score (``hgimb.advise``)
would favour post-hoc remedies for the fit alone. :func:`crossfit_val_metrics` scores them
out of fold instead: the validation items are split into K stratified folds; the post-hoc parts
are refitted on K - 1 folds and predict the held-out fold; the out-of-fold predictions are
scored with the same :func:`hgimb.metrics.classification_report` as every split. The model and
its raw logits are untouched (no retraining): only the post-hoc fit moves.

The runner stores the result as ``val_crossfit_<metric>`` beside ``val_<metric>``; runs without
post-hoc parts get none (their validation scores are already out of sample for the remedy).
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List

import numpy as np
import torch

CROSSFIT_FOLDS = 5
PREFIX = "val_crossfit_"


def posthoc_parts(remedy) -> List[Any]:
    """The parts of a ComposedRemedy that change logits after training."""
    return [p for p in getattr(remedy, "parts", []) if p.owns("adjust") or p.owns("apply")]


def crossfit_predictions(logits: torch.Tensor, y: np.ndarray, parts: List[Any], folds: int,
                         seed: int) -> np.ndarray:
    """Out-of-fold predicted classes: per stratified fold, ``parts`` fitted on the other folds
    (in the order a ComposedRemedy chains them) shift the held-out fold's logits."""
    from sklearn.model_selection import StratifiedKFold

    pred = np.empty(len(y), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_rows, held_rows in splitter.split(np.zeros(len(y)), y):
        fit_logits = logits[torch.as_tensor(fit_rows)]
        held = logits[torch.as_tensor(held_rows)]
        fit_y = torch.as_tensor(y[fit_rows])
        for part in parts:
            fold_part = copy.copy(part)  # shallow: adjust() rebinds its fitted attributes
            fold_part.adjust(fit_logits, fit_y)
            fit_logits = fold_part.apply(fit_logits)
            held = fold_part.apply(held)
        pred[held_rows] = held.argmax(1).cpu().numpy()
    return pred


def crossfit_val_metrics(result, folds: int = CROSSFIT_FOLDS) -> Dict[str, Any]:
    """``{"val_crossfit_macro_f1": ..., ...}`` for a finished run (a RunResult) whose remedy has
    post-hoc parts; ``{}`` otherwise, for K-fold runs, and when the smallest validation class has
    fewer than 2 items (no stratified split exists)."""
    from ..metrics import classification_report, minority_class
    from .worker import METRIC_KEYS

    outcome, task, cfg = result.outcome, result.task, result.config
    parts = posthoc_parts(outcome.remedy)
    if not parts or (cfg.folds and cfg.folds > 1):
        return {}
    n_train, n_val = task.split["train"].numel(), task.split["val"].numel()
    rows = slice(n_train, n_train + n_val)
    items = outcome.items[rows]
    y = task.y[items].cpu().numpy()
    counts = np.bincount(y, minlength=task.num_classes)
    smallest = int(counts[counts > 0].min()) if (counts > 0).any() else 0
    k = min(folds, smallest)
    if k < 2:
        return {}
    logits = outcome.logits[rows].detach().double().cpu()
    pred = crossfit_predictions(logits, y, parts, k, cfg.seed)
    probs = torch.softmax(logits, 1).numpy()  # ranking metrics: the raw model, as in every report
    report = classification_report(y, probs, task.class_names, pred=pred,
                                   minority=minority_class(task.train_class_counts().numpy()))
    out: Dict[str, Any] = {f"{PREFIX}{key}": report[key] for key in METRIC_KEYS if key in report}
    out[f"{PREFIX}folds"] = k
    return out
