"""``value-regression``: train on the real value a thresholded label was made from.

A binary task made from a real-valued property by ``--threshold T`` (a crystal set such as
magnetic-tc: positive = Tc > T) throws away what the value says about every item: 2,011 negatives
of magnetic-tc range from 0 to 600 K, and a classifier sees them as one class. This remedy trains
the model to *regress* the value instead and reads the class from it, so every training item
carries its full target:

* the regression target of item i is ``t_i = (f(v_i) - f(T)) / s``: ``f`` the ``transform``
  (``none``: the value itself; ``log``: ``log1p``, for non-negative values), ``s`` the standard
  deviation of ``f(v)`` over the training split (training items only);
* a model trained by gradient steps regresses ``t_i`` with its logit difference
  ``z_i = logit_1 - logit_0`` (squared error, each row weighted by its class weight when a
  weighting remedy is combined). As ``softmax`` over two logits is ``sigmoid(z)``, the predicted
  probability of the positive class passes 0.5 exactly where the predicted value passes ``T``,
  and every threshold-free metric (PR-AUC, ROC-AUC) ranks by the predicted value;
* a fitted model (random forest, boosting; :mod:`hgimb.engine.fitted`) fits its regressor on
  ``t`` (the remedy gives the targets through :meth:`ValueRegression.values`) and scores
  ``sigmoid`` of its prediction the same way.

The model selection, the post-hoc ``threshold`` remedy and every metric stay the classification
ones. Why a remedy and not a model: the same model (CGCNN, a forest) is trained either way, and
the choice is the training target, exactly what a loss remedy decides. It does not combine with a
remedy that adds rows without a measured value (``smote``, ``mixup``: their rows have no value);
samplers are fine (they repeat measured items).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..errors import HgimbError
from ..params import Param
from .base import BatchContext, RemedyContext
from .losses import LossRemedy, weighted_mean
from .registry import register_remedy

TRANSFORMS = {"none": lambda v: v, "log": np.log1p}


def value_targets(values: np.ndarray, threshold: float, train_index: np.ndarray, transform: str) -> np.ndarray:
    """``(f(v) - f(threshold)) / std(f(v[train]))`` for every item (float64)."""
    f = TRANSFORMS[transform]
    fv = f(np.asarray(values, dtype=np.float64))
    scale = float(np.std(fv[np.asarray(train_index)]))
    if not np.isfinite(scale) or scale <= 0:
        raise HgimbError("remedy 'value-regression': the training items' values are all equal; there is nothing "
                         "to regress (drop the remedy)")
    return (fv - f(float(threshold))) / scale


@register_remedy
class ValueRegression(LossRemedy):
    """Regress the real value behind a thresholded binary label (logit difference ~ scaled value)."""

    name = "value-regression"
    spec = (Param("transform", str, "none", "the value's scale before standardising: none, or log (log1p)",
                  choices=tuple(TRANSFORMS)),)

    def __init__(self, **params):
        super().__init__(**params)
        self.targets: Optional[torch.Tensor] = None  # [num_items] float, every item (CPU)
        self.targets_on_device: Optional[torch.Tensor] = None  # the same on the training device
        self.items: Optional[torch.Tensor] = None  # the current step's item ids

    def check(self, ctx: RemedyContext) -> None:
        meta = getattr(ctx.task, "meta", None) or {}
        values, threshold = meta.get("raw_target"), meta.get("threshold")
        if values is None or threshold is None or not ctx.is_binary:
            name = getattr(ctx.task, "name", "this task")
            raise HgimbError(f"remedy 'value-regression' needs a binary task made from a real-valued target by "
                             f"--threshold (e.g. magnetic-tc --threshold 600); '{name}' has class labels only")
        if self.p["transform"] == "log" and float(np.min(values)) <= -1:
            raise HgimbError(f"remedy 'value-regression': transform=log needs values > -1; the smallest is "
                             f"{float(np.min(values)):g} (use transform=none)")

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        meta = ctx.task.meta
        targets = value_targets(meta["raw_target"], meta["threshold"], ctx.train_index.cpu().numpy(),
                                self.p["transform"])
        self.targets = torch.from_numpy(targets).float()
        self.targets_on_device = self.targets.to(ctx.device)

    def values(self, items: torch.Tensor) -> torch.Tensor:
        """The regression targets of ``items`` (float ``[N]``), for a model fitted in one call."""
        return self.targets[items.cpu()]

    def batch(self, step: BatchContext) -> None:
        self.items = step.items

    def loss(self, logits: torch.Tensor, target: torch.Tensor, epoch: int) -> torch.Tensor:
        if self.items is None or logits.size(0) != self.items.numel():
            raise HgimbError("remedy 'value-regression' regresses each row's measured value; rows added by a "
                             "synthesis or augmentation remedy have none: drop that remedy")
        t = self.targets_on_device.to(logits.device)[self.items]
        z = logits[:, 1] - logits[:, 0]
        error = (z - t.to(z.dtype)) ** 2
        weight = self.class_weight(epoch, logits.device)
        if weight is None:
            return error.mean()
        # each row's squared error weighted by its class weight (a weighting remedy is combined)
        return weighted_mean(error[:, None].expand(-1, logits.size(1)), target, weight)
