"""Sampling remedies: which training items (with repeats) feed an epoch.

``balanced-sampler`` draws class-balanced with replacement (vectorised torch). ``oversample`` and
``undersample`` use imbalanced-learn's ``RandomOverSampler`` / ``RandomUnderSampler`` on the
array of training positions (``fit_resample`` on X = positions, y = labels); their
``random_state`` is drawn from the trainer's ``torch.Generator``, so a run is deterministic
given its seed and each epoch gets a fresh draw. Every sampler returns the indices shuffled
(mini-batch training takes them in order).
"""
from __future__ import annotations

from typing import Any, Dict, List, Union

import numpy as np
import torch
from imblearn.over_sampling import RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler
from imblearn.utils import check_sampling_strategy

from ..errors import HgimbError
from ..params import Param
from .base import Remedy, RemedyContext
from .registry import register_remedy

STRATEGY_NAMES = {
    "over-sampling": ("auto", "minority", "not minority", "not majority", "all"),
    "under-sampling": ("auto", "majority", "not minority", "not majority", "all"),
}
# checked when the remedy meets the task (parse_sampling_strategy: class names, binary ratio)
SAMPLING_STRATEGY = Param("sampling_strategy", None, "auto", "imbalanced-learn sampling_strategy: a name, a ratio "
                          "(binary) or class:count pairs")

Strategy = Union[str, float, Dict[int, int]]


def parse_sampling_strategy(remedy: str, value: Any, kind: str, class_names: List[str]) -> Strategy:
    """imbalanced-learn's ``sampling_strategy`` from a config/CLI value: a name, a float ratio
    (binary tasks), or a mapping class -> target count (``{0: 100}`` or the string ``"0:100,1:50"``;
    keys may be class indices or class names)."""
    expected = (f"one of {', '.join(STRATEGY_NAMES[kind])}, a ratio in (0, 1] (binary tasks) or "
                f"class:count pairs like '{{1: 100, 2: 100}}'")
    if isinstance(value, str):
        text = value.strip()
        if text in STRATEGY_NAMES[kind]:
            return text
        if ":" in text:
            try:
                value = dict(part.split(":", 1) for part in text.strip("{}").split(","))
            except ValueError:
                raise HgimbError(f"remedy '{remedy}': sampling_strategy={value!r} is invalid; expected {expected}") from None
        else:
            try:
                value = float(text)
            except ValueError:
                raise HgimbError(f"remedy '{remedy}': sampling_strategy={value!r} is invalid; expected {expected}") from None
    if isinstance(value, dict):
        out: Dict[int, int] = {}
        for key, count in value.items():
            key_text = str(key).strip().strip("'\"")
            if key_text in class_names:
                cls = class_names.index(key_text)
            elif key_text.lstrip("-").isdigit():
                cls = int(key_text)
            else:
                raise HgimbError(f"remedy '{remedy}': sampling_strategy names class {key!r}, which is neither a class "
                                 f"index nor one of {class_names}")
            try:
                out[cls] = int(str(count).strip())
            except ValueError:
                raise HgimbError(f"remedy '{remedy}': sampling_strategy count {count!r} for class {key!r} is not an integer") from None
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < float(value) <= 1:
        return float(value)
    raise HgimbError(f"remedy '{remedy}': sampling_strategy={value!r} is invalid; expected {expected}")


def resolve_sampling_strategy(remedy: str, strategy: Strategy, labels: np.ndarray, kind: str) -> Dict[int, int]:
    """imbalanced-learn's plan: class -> number of items to add (over) or keep (under)."""
    try:
        plan = check_sampling_strategy(strategy, labels, kind)
    except ValueError as exc:
        raise HgimbError(f"remedy '{remedy}': sampling_strategy={strategy!r} does not fit the training labels "
                         f"(counts {np.bincount(labels).tolist()}): {exc}") from None
    return {int(c): int(n) for c, n in plan.items()}


def planned_counts(remedy: str, strategy: Strategy, counts: torch.Tensor, kind: str) -> torch.Tensor:
    """The class counts after imbalanced-learn's plan for ``strategy`` on items with ``counts``
    (rounded to whole items): over-sampling adds the planned items, under-sampling keeps them."""
    whole = np.rint(counts.double().cpu().numpy()).astype(np.int64)
    labels = np.repeat(np.arange(whole.size), whole)
    out = counts.double().clone()
    if np.unique(labels).size < 2:  # nothing is a minority (resolve_sampling_strategy would refuse)
        return out
    for cls, n in resolve_sampling_strategy(remedy, strategy, labels, kind).items():
        out[cls] = out[cls] + n if kind == "over-sampling" else float(n)
    return out


def draw_seed(rng: torch.Generator) -> int:
    """A numpy/sklearn seed drawn from the trainer's torch generator (deterministic per run)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=rng, device=rng.device).item())


def shuffled(index: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    perm = torch.randperm(index.numel(), generator=rng, device=rng.device).to(index.device)
    return index[perm]


@register_remedy
class BalancedSampler(Remedy):
    """Class-balanced sampling with replacement: every class equally likely each epoch (Kang et al. ICLR 2020)."""

    name = "balanced-sampler"

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        counts = ctx.train_class_counts.double()
        present = int((counts > 0).sum())
        # item probability 1 / (#classes * n_class): classes equally likely, uniform within a class
        self.prob = (1.0 / (present * counts[ctx.train_labels])).float()

    def loss_class_counts(self, counts: torch.Tensor) -> torch.Tensor:
        present = counts > 0  # as many draws as items, every present class equally likely
        return torch.where(present, counts.sum() / present.sum(), torch.zeros_like(counts))

    def train_index(self, epoch: int, rng: torch.Generator) -> torch.Tensor:
        draw = torch.multinomial(self.prob.to(rng.device), self.prob.numel(), replacement=True, generator=rng)
        return self.ctx.train_index[draw.to(self.ctx.train_index.device)]


class _Resampler(Remedy):
    kind = "over-sampling"
    sampler_cls: Any = None
    spec = (SAMPLING_STRATEGY,)

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        self.labels = ctx.train_labels.cpu().numpy()
        self.strategy = parse_sampling_strategy(self.name, self.p["sampling_strategy"], self.kind, ctx.class_names)
        self.plan = resolve_sampling_strategy(self.name, self.strategy, self.labels, self.kind)  # fail before training

    def loss_class_counts(self, counts: torch.Tensor) -> torch.Tensor:
        return planned_counts(self.name, self.strategy, counts, self.kind)

    def train_index(self, epoch: int, rng: torch.Generator) -> torch.Tensor:
        sampler = self.sampler_cls(sampling_strategy=self.strategy, random_state=draw_seed(rng))
        positions = np.arange(self.labels.size).reshape(-1, 1)
        resampled, _ = sampler.fit_resample(positions, self.labels)
        chosen = torch.as_tensor(resampled[:, 0], dtype=torch.long, device=self.ctx.train_index.device)
        return shuffled(self.ctx.train_index[chosen], rng)


@register_remedy
class Oversample(_Resampler):
    """Random over-sampling of minority classes, fresh each epoch (imbalanced-learn RandomOverSampler)."""

    name = "oversample"
    kind = "over-sampling"
    sampler_cls = RandomOverSampler


@register_remedy
class Undersample(_Resampler):
    """Random under-sampling of majority classes, fresh each epoch (imbalanced-learn RandomUnderSampler)."""

    name = "undersample"
    kind = "under-sampling"
    sampler_cls = RandomUnderSampler
