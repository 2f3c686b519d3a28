"""The Remedy interface and its composition (docs/architecture.md, "Remedy").

A remedy implements any of the hooks below; the trainer calls them through a
:class:`ComposedRemedy` built from ``--remedy a+b+c``. Hooks that return ``None`` mean "not
mine". At most one part may own each of ``loss``, ``train_index`` and ``synthesize`` (two
training losses make no sense together: that is a clear error, not a silent pick);
``class_weight`` from a weighting remedy is handed to whichever loss is in use; post-hoc
``adjust``/``apply`` chain in the order written.

Class statistics come from the training split only: the trainer builds the
:class:`RemedyContext` from ``task.split['train']`` and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ..errors import HgimbError


@dataclass
class RemedyContext:
    num_classes: int
    train_index: torch.Tensor  # item indices of the labelled training items
    train_labels: torch.Tensor  # their classes (same order)
    kind: str = "node"  # "node" or "graph"
    epochs: int = 200
    seed: int = 0
    class_names: List[str] = field(default_factory=list)
    class_weight: Optional[torch.Tensor] = None  # set by weighting remedies, used by the loss
    # per-epoch class weights (deferred re-weighting): epoch -> weights or None; overrides class_weight
    class_weight_schedule: Optional[Callable[[int], Optional[torch.Tensor]]] = None
    extras: Dict[str, Any] = field(default_factory=dict)  # task facts some remedies need (graph, ...)

    @property
    def train_class_counts(self) -> torch.Tensor:
        return torch.bincount(self.train_labels, minlength=self.num_classes)

    @property
    def priors(self) -> torch.Tensor:
        counts = self.train_class_counts.double()
        return (counts / counts.sum()).float()

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 2

    def class_weight_at(self, epoch: int) -> Optional[torch.Tensor]:
        """Class weights in force at ``epoch``: the schedule (``drw``) if set, else ``class_weight``."""
        if self.class_weight_schedule is not None:
            return self.class_weight_schedule(epoch)
        return self.class_weight


class Remedy:
    """Base class. Subclasses set ``name`` and ``params`` (declared parameters with defaults;
    ``--remedy-param name=value`` overrides them) and override the hooks they need."""

    name: str = ""
    params: Dict[str, Any] = {}

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.params)
        if unknown:
            raise HgimbError(
                f"remedy '{self.name}' has no parameter(s) {sorted(unknown)}; its parameters: "
                f"{sorted(self.params) or 'none'}"
            )
        self.p: Dict[str, Any] = {**self.params, **params}
        self.ctx: Optional[RemedyContext] = None

    # -- set-up --------------------------------------------------------------------------
    def check(self, ctx: RemedyContext) -> None:
        """Raise HgimbError if this remedy does not apply to the task (e.g. binary-only)."""

    def setup(self, ctx: RemedyContext) -> None:
        """Compute what is needed from training-split statistics."""
        self.ctx = ctx

    def init_model(self, model: torch.nn.Module) -> None:
        """Adjust a freshly built model (e.g. set the output bias)."""

    # -- training ------------------------------------------------------------------------
    def train_index(self, epoch: int, rng: torch.Generator) -> Optional[torch.Tensor]:
        """Item indices (repeats allowed) that feed this epoch, or None."""
        return None

    def batch(self, items: torch.Tensor, epoch: int) -> None:
        """The item ids of this step's training rows, in row order (repeats allowed), before
        ``synthesize`` and ``loss`` see those rows: remedies that need to know which node a row
        is (``tam``) read them here instead of owning ``train_index``."""

    def synthesize(self, h: torch.Tensor, y: torch.Tensor, rng: torch.Generator
                   ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Given training embeddings and hard labels, return ``(h_new, target_new)`` that replace
        them for the head (targets may become soft ``[N, C]`` probabilities), or None."""
        return None

    def loss(self, logits: torch.Tensor, target: torch.Tensor, epoch: int) -> Optional[torch.Tensor]:
        """The training criterion (target: class indices ``[N]`` or soft labels ``[N, C]``)."""
        return None

    # -- post-hoc ------------------------------------------------------------------------
    def adjust(self, val_logits: torch.Tensor, val_y: torch.Tensor) -> Optional[Dict[str, Any]]:
        """Fit post-hoc parameters on validation only; return them (saved in metrics.json)."""
        return None

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    # -- introspection -------------------------------------------------------------------
    def owns(self, hook: str) -> bool:
        return getattr(type(self), hook) is not getattr(Remedy, hook)

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in self.p.items())})"


def cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                  weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """CE for hard or soft targets, with optional class weights (the default criterion)."""
    if target.dtype.is_floating_point:
        logp = F.log_softmax(logits, dim=-1)
        w = torch.ones(logits.size(-1), device=logits.device) if weight is None else weight
        per_item = -(target * logp * w).sum(-1)
        norm = (target * w).sum(-1).sum()
        return per_item.sum() / norm.clamp_min(1e-12)
    return F.cross_entropy(logits, target, weight=weight)


class ComposedRemedy:
    """Several remedies acting as one; what the trainer talks to."""

    EXCLUSIVE = ("loss", "train_index", "synthesize")

    def __init__(self, parts: List[Remedy]):
        self.parts = parts
        self.name = "+".join(p.name for p in parts) or "none"
        for hook in self.EXCLUSIVE:
            owners = [p.name for p in parts if p.owns(hook)]
            if len(owners) > 1:
                what = {"loss": "the training loss", "train_index": "which samples feed an epoch",
                        "synthesize": "synthetic samples"}[hook]
                raise HgimbError(
                    f"remedies {' and '.join(repr(o) for o in owners)} both decide {what}; combine at most one of them"
                )
        self.fitted: Dict[str, Any] = {}
        self.ctx: Optional[RemedyContext] = None

    def setup(self, ctx: RemedyContext) -> None:
        for part in self.parts:
            part.check(ctx)
        for part in self.parts:
            part.setup(ctx)
        self.ctx = ctx

    def init_model(self, model) -> None:
        for part in self.parts:
            part.init_model(model)

    def _owner(self, hook: str) -> Optional[Remedy]:
        return next((p for p in self.parts if p.owns(hook)), None)

    def train_index(self, epoch: int, rng: torch.Generator) -> Optional[torch.Tensor]:
        owner = self._owner("train_index")
        return owner.train_index(epoch, rng) if owner else None

    def batch(self, items: torch.Tensor, epoch: int) -> None:
        for part in self.parts:  # not exclusive: every part may look at the ids
            part.batch(items, epoch)

    def synthesize(self, h, y, rng):
        owner = self._owner("synthesize")
        return owner.synthesize(h, y, rng) if owner else None

    def loss(self, logits, target, epoch: int) -> torch.Tensor:
        owner = self._owner("loss")
        if owner is not None:
            value = owner.loss(logits, target, epoch)
            if value is not None:
                return value
        weight = self.ctx.class_weight_at(epoch) if self.ctx is not None else None
        if weight is not None:
            weight = weight.to(logits.device)
        return cross_entropy(logits, target, weight)

    def adjust(self, val_logits, val_y) -> Dict[str, Any]:
        logits = val_logits
        for part in self.parts:
            fitted = part.adjust(logits, val_y)
            if fitted:
                self.fitted[part.name] = fitted
            logits = part.apply(logits)
        return self.fitted

    def apply(self, logits):
        for part in self.parts:
            logits = part.apply(logits)
        return logits

    @property
    def has_posthoc(self) -> bool:
        return any(p.owns("adjust") or p.owns("apply") for p in self.parts)
