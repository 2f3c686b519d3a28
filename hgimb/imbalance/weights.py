"""Class weighting remedies: ``weighted`` (static class weights) and ``drw`` (deferred
re-weighting).

Weights come from the training class counts in the :class:`RemedyContext` only. Every scheme is
normalised so that the weights average to 1 over the classes (``sum(w) == C``, the
normalisation of Cui et al. 2019), which keeps the loss scale comparable across schemes; the
*ratios* are those of the scheme (``inverse`` has the ratios of scikit-learn's
``class_weight='balanced'``, ``n / (C * n_c)``).

Losses never read ``ctx.class_weight`` directly: they ask ``ctx.class_weight_at(epoch)``, which
returns the ``drw`` schedule's weights when one is set, else the static weights. That is how a
weighting remedy composes with whichever loss is in use (``weighted+focal``, ``ldam+drw``).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight

from ..errors import HgimbError
from ..params import Param, Range, Rule
from .base import Remedy, RemedyContext
from .registry import register_remedy

WEIGHT_SCHEMES = ("inverse", "sqrt-inverse", "effective-number")


# ---------------------------------------------------------------------------------- weights
def normalise_weights(weights: torch.Tensor) -> torch.Tensor:
    """Rescale so the weights average to 1 over classes (sum == number of classes)."""
    weights = weights.double()
    return (weights * weights.numel() / weights.sum()).float()


def effective_number_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Cui et al. CVPR 2019: w_c proportional to (1 - beta) / (1 - beta^n_c), normalised to mean 1."""
    counts = counts.double().clamp_min(1)  # Task.validate forbids empty classes; never divide by 0
    return normalise_weights((1.0 - beta) / (1.0 - torch.pow(beta, counts)))


def class_weights(counts: torch.Tensor, scheme: str = "inverse", beta: float = 0.999) -> torch.Tensor:
    """Class weights from training class counts, normalised to average 1 over classes.

    ``inverse``: n / (C n_c) (scikit-learn's 'balanced'); ``sqrt-inverse``: 1 / sqrt(n_c);
    ``effective-number``: (1 - beta) / (1 - beta^n_c) (Cui et al. 2019).
    """
    counts = torch.as_tensor(counts).long()
    if scheme == "inverse":
        # expand counts into labels: sklearn's function wants y, and we want its exact convention
        labels = np.repeat(np.arange(counts.numel()), counts.clamp_min(1).numpy())
        raw = compute_class_weight("balanced", classes=np.arange(counts.numel()), y=labels)
        return normalise_weights(torch.as_tensor(raw))
    if scheme == "sqrt-inverse":
        return normalise_weights(counts.double().clamp_min(1).rsqrt())
    if scheme == "effective-number":
        return effective_number_weights(counts, beta)
    raise HgimbError(f"unknown class-weight scheme '{scheme}'; valid: {', '.join(WEIGHT_SCHEMES)}")


def _beta(default: float) -> Param:
    return Param("beta", float, default, "effective-number beta (Cui et al.)", Range(0, 1, low_open=True, high_open=True))


@register_remedy
class Weighted(Remedy):
    """Class-weighted loss: inverse, sqrt-inverse or effective-number weights (Cui et al. CVPR 2019)."""

    name = "weighted"
    spec = (Param("scheme", str, "inverse", "class-weight scheme", choices=WEIGHT_SCHEMES), _beta(0.999))

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.scheme, self.beta = self.p["scheme"], self.p["beta"]
        self.weight: Optional[torch.Tensor] = None

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        self.weight = class_weights(ctx.train_class_counts, self.scheme, self.beta)
        ctx.class_weight = self.weight


@register_remedy
class DeferredReweighting(Remedy):
    """Deferred re-weighting: effective-number class weights from epoch drw_epoch on (Cao et al. NeurIPS 2019)."""

    name = "drw"
    spec = (Param("drw_epoch", float, 0.8, "epoch the re-weighting starts: a number, or a fraction of the epochs",
                  Rule(lambda v: v > 0 and (v < 1 or v == int(v)),
                       "an epoch number >= 1 or a fraction of the epochs in (0, 1)")),
            _beta(0.9999))  # beta as in the paper

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.beta, self._drw_epoch = self.p["beta"], self.p["drw_epoch"]
        self.switch_epoch: Optional[int] = None
        self.weight: Optional[torch.Tensor] = None

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        d = self._drw_epoch
        if d < 1:  # a fraction of the run; at most the last epoch, so short runs still switch
            self.switch_epoch = min(int(round(d * ctx.epochs)), max(ctx.epochs - 1, 0))
        elif d >= ctx.epochs:
            raise HgimbError(f"remedy 'drw': drw_epoch={int(d)} is not before the end of the run (epochs={ctx.epochs}, "
                             f"counted from 0), so it would never re-weight; lower drw_epoch or give a fraction like 0.8")
        else:
            self.switch_epoch = int(d)
        self.weight = effective_number_weights(ctx.train_class_counts, self.beta)
        ctx.class_weight_schedule = self.weight_at
        # early stopping must not end the run before the re-weighting phase has had its turn
        ctx.min_epochs = max(ctx.min_epochs, min(self.switch_epoch + 20, ctx.epochs))

    def weight_at(self, epoch: int) -> Optional[torch.Tensor]:
        """No weights before ``switch_epoch`` (epochs as the trainer counts them), then the weights."""
        if self.ctx is not None and self.ctx.class_weight is not None:
            # order-independent: whichever of the two was set up first, the clash shows on first use
            raise HgimbError("remedy 'drw' schedules its own class weights, but static class weights are set "
                             "too (by 'weighted'); combine 'drw' with a loss, not with 'weighted'")
        return self.weight if epoch >= self.switch_epoch else None
