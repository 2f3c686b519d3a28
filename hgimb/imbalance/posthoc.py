"""Initialisation and post-hoc remedies.

``prior-bias`` sets the head's bias to the log training priors before training. ``threshold``
and ``posthoc-logit-adjust`` change the logits after training: ``adjust`` sees validation
logits and labels only (never test), ``apply`` shifts any logits, and predictions are the argmax
of the shifted logits. Every shift is additive per class, so it also moves the probabilities
consistently (softmax of the shifted logits).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch
from sklearn.metrics import precision_recall_curve
from torch import nn

from ..errors import HgimbError
from ..params import Param, Range
from .base import Remedy, RemedyContext
from .losses import log_prior
from .registry import register_remedy


@register_remedy
class PriorBias(Remedy):
    """Output bias initialised to the log class priors (TensorFlow 'imbalanced data' tutorial; Lin et al. 2017)."""

    name = "prior-bias"

    def init_model(self, model: nn.Module) -> None:
        from ..models.base import classifier_head

        head = classifier_head(model)  # the model's declared final linear layer (hgimb.models.base)
        if head is None or head.bias is None:
            what = "no linear head" if head is None else "a linear head without a bias"
            raise HgimbError(f"remedy 'prior-bias' needs a model whose classifier_head() is an nn.Linear with a bias; "
                             f"{type(model).__name__} has {what}")
        with torch.no_grad():
            head.bias.copy_(log_prior(self.ctx).to(head.bias.device, head.bias.dtype))


@register_remedy
class PosthocLogitAdjust(Remedy):
    """Post-hoc logit adjustment: subtract tau * log prior at inference (Menon et al. ICLR 2021)."""

    name = "posthoc-logit-adjust"
    spec = (Param("tau", float, 1.0, "scale of the log-prior subtracted (paper: 1.0)", Range(0)),)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.tau = self.p["tau"]

    def adjust(self, val_logits, val_y):
        return {"tau": self.tau, "log_prior": log_prior(self.ctx).tolist()}

    def apply(self, logits):
        return logits - self.tau * log_prior(self.ctx).to(logits.device, logits.dtype)


def _binary_threshold(z: np.ndarray, positive: np.ndarray) -> Dict[str, float]:
    """The cut on z = logit1 - logit0 (a monotone map of p1) that maximises validation F1.

    sklearn's precision_recall_curve gives F1 at every distinct score; the best score s* means
    "positive iff z >= s*". The cut is placed midway between s* and the next lower score, so a
    strict ``z > cut`` (what argmax of the shifted logits does) reproduces the same validation
    predictions without ties, with the largest margin on either side.
    """
    if positive.all() or not positive.any():  # F1 is constant: keep the argmax decision
        return {"logit_shift": 0.0, "val_f1": None}  # None, not NaN: metrics.json stays valid JSON
    precision, recall, scores = precision_recall_curve(positive, z)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)[: scores.size]
    best = int(np.argmax(f1))
    s_star = scores[best]
    lower = z[z < s_star]
    cut = (s_star + lower.max()) / 2 if lower.size else s_star - 1.0
    return {"logit_shift": float(cut), "val_f1": float(f1[best])}


def _macro_f1_sweep(logits: np.ndarray, y: np.ndarray, offsets: np.ndarray, c: int):
    """Macro-F1 for every distinct offset of class ``c`` (others fixed), vectorised.

    With the other offsets fixed, item i is predicted c iff logit_ic + o > d_i + logit_ic where
    d_i = max_{j != c}(logit_ij + o_j) - logit_ic, so predictions only change at the breakpoints
    d_i: sorting them turns every confusion count into a cumulative sum. Returns
    (candidate offsets, macro-F1 of each).
    """
    n, num_classes = logits.shape
    shifted = logits + offsets
    others = shifted.copy()
    others[:, c] = -np.inf
    alt = others.argmax(1)  # the prediction when c is not chosen
    d = others.max(1) - logits[:, c]
    order = np.argsort(d, kind="stable")
    d_sorted, y_sorted, alt_sorted = d[order], y[order], alt[order]
    distinct = np.unique(d_sorted)
    candidates = np.concatenate([[distinct[0] - 1.0], (distinct[:-1] + distinct[1:]) / 2, [distinct[-1] + 1.0]])
    k = np.searchsorted(d_sorted, candidates, side="left")  # how many items switch to c

    eye = np.eye(num_classes, dtype=np.int64)
    zero = np.zeros((1, num_classes), dtype=np.int64)
    cum_alt = np.concatenate([zero, np.cumsum(eye[alt_sorted], 0)])  # [n+1, C]
    cum_alt_tp = np.concatenate([zero, np.cumsum(eye[alt_sorted] * (alt_sorted == y_sorted)[:, None], 0)])
    cum_c_tp = np.concatenate([[0], np.cumsum(y_sorted == c)])
    predicted = cum_alt[-1] - cum_alt[k]  # items still predicted as their alternative
    true_pos = cum_alt_tp[-1] - cum_alt_tp[k]
    predicted[:, c] = k
    true_pos[:, c] = cum_c_tp[k]
    support = np.bincount(y, minlength=num_classes)
    denom = predicted + support
    f1 = np.where(denom > 0, 2 * true_pos / np.maximum(denom, 1), 0.0)
    return candidates, f1.mean(1)


def fit_class_offsets(logits: np.ndarray, y: np.ndarray, max_rounds: int = 20):
    """Per-class additive logit offsets maximising validation macro-F1 by exact coordinate ascent.

    Each step sets one class's offset to the best value given the others, scanning every
    breakpoint (not a grid: exact and deterministic). Among equally good offsets the one nearest
    the current value wins; a step is taken only if it strictly improves, so this terminates.
    Returns (offsets centred to mean 0, validation macro-F1).
    """
    logits = logits.astype(np.float64)
    num_classes = logits.shape[1]
    offsets = np.zeros(num_classes)
    current = _macro_f1_at(logits, y, offsets)
    for _ in range(max_rounds):
        improved = False
        for c in range(num_classes):
            candidates, scores = _macro_f1_sweep(logits, y, offsets, c)
            best = scores.max()
            if best > current + 1e-12:
                ties = np.flatnonzero(scores >= best - 1e-12)
                offsets[c] = candidates[ties[np.argmin(np.abs(candidates[ties] - offsets[c]))]]
                current, improved = best, True
        if not improved:
            break
    return offsets - offsets.mean(), float(current)


def _macro_f1_at(logits: np.ndarray, y: np.ndarray, offsets: np.ndarray) -> float:
    num_classes = logits.shape[1]
    pred = (logits + offsets).argmax(1)
    tp = np.bincount(y[pred == y], minlength=num_classes)
    denom = np.bincount(pred, minlength=num_classes) + np.bincount(y, minlength=num_classes)
    return float(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0).mean())


@register_remedy
class Threshold(Remedy):
    """Decision thresholds tuned on validation: binary F1-optimal threshold, multi-class macro-F1 logit offsets."""

    name = "threshold"
    spec = (Param("max_rounds", int, 20, "coordinate-ascent sweeps over the classes (multi-class)", Range(1)),)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.max_rounds = self.p["max_rounds"]
        self.offsets: Optional[torch.Tensor] = None

    def adjust(self, val_logits, val_y):
        logits = val_logits.detach().double().cpu().numpy()
        y = val_y.cpu().numpy()
        num_classes = logits.shape[1]
        if num_classes == 2:
            fit = _binary_threshold(logits[:, 1] - logits[:, 0], y == 1)
            self.offsets = torch.tensor([0.0, -fit["logit_shift"]], dtype=torch.float64)
            # p1 >= threshold  <=>  logit1 - logit0 >= logit(threshold) = logit_shift
            return {"threshold": float(1.0 / (1.0 + np.exp(-fit["logit_shift"]))), **fit}
        offsets, score = fit_class_offsets(logits, y, self.max_rounds)
        self.offsets = torch.as_tensor(offsets)
        return {"offsets": offsets.tolist(), "val_macro_f1": score}

    def apply(self, logits):
        if self.offsets is None:
            raise RuntimeError("Threshold.apply called before adjust (fit on validation first)")
        return logits + self.offsets.to(logits.device, logits.dtype)
