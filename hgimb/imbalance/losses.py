"""Imbalance-aware training losses. Each owns the ``loss`` hook, so at most one is used per run.

Every loss accepts hard targets ``[N]`` (class indices) and soft targets ``[N, C]`` (mixup,
label smoothing) and uses the class weights in force at the epoch
(``ctx.class_weight_at(epoch)``: from ``weighted`` or the ``drw`` schedule), so
``weighted+focal`` is focal loss with those weights as alpha and ``ldam+drw`` is LDAM-DRW.
Weighted losses are normalised like PyTorch's weighted cross-entropy: sum of weighted item losses
divided by the sum of the items' weights. Class statistics come from the training split only;
the log prior of the prior-shift losses (balanced softmax, logit-adjusted) is that of the rows the
loss sees (``RemedyContext.loss_priors``), so ``oversample+balanced-softmax`` or
``graphsha+balanced-softmax`` does not correct twice. Class weights and LDAM margins stay those
of the split.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from ..errors import HgimbError
from ..params import Param, Range
from .base import Remedy, RemedyContext, cross_entropy
from .registry import register_remedy
from .weights import class_weights


def soft_targets(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices -> one-hot float; soft targets pass through unchanged."""
    if target.dtype.is_floating_point:
        return target
    return F.one_hot(target, num_classes).float()


def log_prior(ctx: RemedyContext) -> torch.Tensor:
    """log of the class priors the loss trains under (``ctx.loss_priors``: the training split's,
    or what a sampler or synthesis remedy makes of them); a class with no item gets a tiny prior,
    not -inf."""
    return ctx.loss_priors.clamp_min(1e-12).log()


class LossRemedy(Remedy):
    """Shared plumbing: the class weights in force at an epoch, on the logits' device."""

    def class_weight(self, epoch: int, device: torch.device) -> Optional[torch.Tensor]:
        weight = self.ctx.class_weight_at(epoch) if self.ctx is not None else None
        return None if weight is None else weight.to(device)


def weighted_mean(per_class_loss: torch.Tensor, target: torch.Tensor,
                  weight: Optional[torch.Tensor]) -> torch.Tensor:
    """sum_i sum_c t_ic w_c l_ic / sum_i sum_c t_ic w_c: the weighted-CE normalisation, hard or soft."""
    t = soft_targets(target, per_class_loss.size(-1))
    tw = t if weight is None else t * weight
    return (tw * per_class_loss).sum() / tw.sum().clamp_min(1e-12)


# ---------------------------------------------------------------------------------- focal
def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Focal loss -alpha_t (1 - p_t)^gamma log p_t (Lin et al. ICCV 2017), alpha as class weights.

    gamma=0 is (weighted) cross-entropy. Soft targets: sum_c t_c alpha_c (1 - p_c)^gamma (-log p_c).
    """
    logp = F.log_softmax(logits, dim=-1)
    modulating = (1.0 - logp.exp()).clamp_min(0.0).pow(gamma)
    return weighted_mean(-modulating * logp, target, weight)


@register_remedy
class Focal(LossRemedy):
    """Focal loss, down-weighting easy examples by (1-p)^gamma (Lin et al. ICCV 2017)."""

    name = "focal"
    # alpha: None (no alpha), a number in (0, 1) = alpha of the positive class (binary tasks only,
    # 1 - alpha for the negative class; the paper uses 0.25), or "auto" (inverse class frequency)
    spec = (Param("gamma", float, 2.0, "focusing exponent", Range(0)),
            Param("alpha", float, None, "positive-class weight (binary), auto = inverse frequency, none = no alpha",
                  Range(0, 1, low_open=True, high_open=True), choices=("auto",), none=True))

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.gamma, self.alpha_mode = self.p["gamma"], self.p["alpha"]
        self.alpha: Optional[torch.Tensor] = None

    def check(self, ctx: RemedyContext) -> None:
        if isinstance(self.alpha_mode, float) and not ctx.is_binary:
            raise HgimbError(f"remedy 'focal': alpha={self.alpha_mode} is the positive-class weight of a binary task, "
                             f"but this task has {ctx.num_classes} classes; use alpha=auto or 'weighted+focal'")

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        if self.alpha_mode == "auto":
            self.alpha = class_weights(ctx.train_class_counts, "inverse")
        elif isinstance(self.alpha_mode, float):
            self.alpha = torch.tensor([1.0 - self.alpha_mode, self.alpha_mode])

    def loss(self, logits, target, epoch):
        weight = self.class_weight(epoch, logits.device)
        if self.alpha is not None:
            if weight is not None:
                raise HgimbError("remedy 'focal' has alpha set and class weights come from another remedy "
                                 "('weighted' or 'drw'); set alpha=none to use those weights as alpha")
            weight = self.alpha.to(logits.device)
        return focal_loss(logits, target, self.gamma, weight)


# ---------------------------------------------------------------------------------- pos-weight
@register_remedy
class PosWeight(LossRemedy):
    """Binary BCE-with-logits on logit1 - logit0 with pos_weight = negatives/positives (PyTorch BCEWithLogitsLoss)."""

    name = "pos-weight"
    spec = (Param("pos_weight", float, None, "weight of the positive class (none: negatives / positives)",
                  Range(0, low_open=True), none=True),)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.given = self.p["pos_weight"]
        self.pos_weight: Optional[torch.Tensor] = None

    def check(self, ctx: RemedyContext) -> None:
        if not ctx.is_binary:
            names = f" ({', '.join(ctx.class_names)})" if ctx.class_names else ""
            raise HgimbError(f"remedy 'pos-weight' needs a binary task; this task has {ctx.num_classes} "
                             f"classes{names}; use 'weighted' for class weights on multi-class tasks")

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        counts = ctx.train_class_counts.double()
        value = self.given if self.given is not None else float(counts[0] / counts[1].clamp_min(1))
        self.pos_weight = torch.tensor(value)

    def loss(self, logits, target, epoch):
        if self.class_weight(epoch, logits.device) is not None:
            raise HgimbError("remedy 'pos-weight' already weights the positive class; drop 'weighted'/'drw' "
                             "or use them with plain cross-entropy instead")
        # softmax over two logits is the sigmoid of their difference, so this is CE with pos_weight
        z = logits[:, 1] - logits[:, 0]
        t = target[:, 1] if target.dtype.is_floating_point else target.float()
        return F.binary_cross_entropy_with_logits(z, t, pos_weight=self.pos_weight.to(logits.device))


# ---------------------------------------------------------------------------------- prior-shifted CE
def prior_adjusted_ce(logits: torch.Tensor, target: torch.Tensor, log_prior: torch.Tensor, tau: float,
                      weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy on logits + tau * log prior (tau=1: balanced softmax)."""
    return cross_entropy(logits + tau * log_prior.to(logits.device), target, weight)


@register_remedy
class BalancedSoftmax(LossRemedy):
    """Balanced softmax: cross-entropy on logits + log prior (Ren et al. NeurIPS 2020)."""

    name = "balanced-softmax"

    def loss(self, logits, target, epoch):
        return prior_adjusted_ce(logits, target, log_prior(self.ctx), 1.0, self.class_weight(epoch, logits.device))


@register_remedy
class LogitAdjustedLoss(LossRemedy):
    """Logit-adjusted loss: cross-entropy on logits + tau * log prior (Menon et al. ICLR 2021)."""

    name = "logit-adjusted"
    spec = (Param("tau", float, 1.0, "scale of the log-prior shift (paper: 1.0)", Range(0)),)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.tau = self.p["tau"]

    def loss(self, logits, target, epoch):
        return prior_adjusted_ce(logits, target, log_prior(self.ctx), self.tau, self.class_weight(epoch, logits.device))


# ---------------------------------------------------------------------------------- LDAM
def ldam_margins(counts: torch.Tensor, max_margin: float = 0.5) -> torch.Tensor:
    """Per-class margins proportional to n_c^(-1/4), the largest (rarest class) = max_margin."""
    m = counts.double().clamp_min(1).pow(-0.25)
    return (m * (max_margin / m.max())).float()


@register_remedy
class LDAM(LossRemedy):
    """Label-distribution-aware margin loss, margins proportional to n_c^(-1/4) (Cao et al. NeurIPS 2019)."""

    name = "ldam"
    # s scales the margin-shifted logits (the paper's s=30 for a cosine head). The hgimb head is a
    # plain nn.Linear, so s acts as an inverse temperature; with Adam the gradient scale is moot.
    spec = (Param("max_margin", float, 0.5, "margin of the rarest class", Range(0)),
            Param("s", float, 30.0, "logit scale", Range(0, low_open=True)))

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.max_margin, self.s = self.p["max_margin"], self.p["s"]
        self.margins: Optional[torch.Tensor] = None

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        self.margins = ldam_margins(ctx.train_class_counts, self.max_margin)

    def loss(self, logits, target, epoch):
        t = soft_targets(target, logits.size(-1))
        # only the true class's logit loses its margin (soft targets: t_c * m_c for every class)
        shifted = self.s * (logits - t * self.margins.to(logits.device))
        return cross_entropy(shifted, target, self.class_weight(epoch, logits.device))


# ---------------------------------------------------------------------------------- label smoothing
@register_remedy
class LabelSmoothing(LossRemedy):
    """Label-smoothing cross-entropy, targets (1-eps) y + eps/C (Szegedy et al. CVPR 2016)."""

    name = "label-smoothing"
    spec = (Param("smoothing", float, 0.1, "label-smoothing epsilon", Range(0, 1, high_open=True)),)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.smoothing = self.p["smoothing"]

    def loss(self, logits, target, epoch):
        num_classes = logits.size(-1)
        smooth = (1.0 - self.smoothing) * soft_targets(target, num_classes) + self.smoothing / num_classes
        return cross_entropy(logits, smooth, self.class_weight(epoch, logits.device))
