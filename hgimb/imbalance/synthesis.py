"""Synthetic training samples in embedding space (the head sees originals plus synthetic ones).

Both remedies keep gradients flowing into the encoder: a synthetic embedding is a torch
expression of real embeddings (``h_i + lam * (h_j - h_i)``), so the encoder learns from the
synthetic samples too, as in GraphSMOTE. imbalanced-learn's ``SMOTE.fit_resample`` works on
numpy arrays and would cut the graph, hence the interpolation is written here in torch and only
the plan (how many per class, imbalanced-learn's ``sampling_strategy``) and the neighbour search
(scikit-learn ``NearestNeighbors`` on detached embeddings) come from the libraries.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.neighbors import NearestNeighbors

from ..params import Param, Range
from .base import Remedy, RemedyContext
from .registry import register_remedy
from .samplers import SAMPLING_STRATEGY, draw_seed, parse_sampling_strategy, planned_counts, resolve_sampling_strategy


@register_remedy
class SMOTE(Remedy):
    """SMOTE in embedding space: minority embeddings interpolated towards same-class neighbours (GraphSMOTE, Zhao et al. WSDM 2021)."""

    name = "smote"
    spec = (Param("k", int, 5, "same-class neighbours to interpolate towards", Range(1)), SAMPLING_STRATEGY)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.k = self.p["k"]

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        self.strategy = parse_sampling_strategy(self.name, self.p["sampling_strategy"], "over-sampling", ctx.class_names)
        resolve_sampling_strategy(self.name, self.strategy, ctx.train_labels.cpu().numpy(), "over-sampling")

    def loss_class_counts(self, counts: torch.Tensor) -> torch.Tensor:
        return planned_counts(self.name, self.strategy, counts, "over-sampling")

    def synthesize(self, h, y, rng):
        labels = y.cpu().numpy()
        if np.unique(labels).size < 2:  # e.g. a one-class mini-batch: nothing is a minority
            return None
        plan = resolve_sampling_strategy(self.name, self.strategy, labels, "over-sampling")
        feats = h.detach().cpu().numpy()
        new_h, new_y = [h], [y]
        for cls, n_add in sorted(plan.items()):  # loop over classes only; vectorised within a class
            if n_add <= 0:
                continue
            members = np.flatnonzero(labels == cls)
            k = min(self.k, members.size - 1)  # k clipped to class size - 1, as SMOTE requires
            base = torch.randint(members.size, (n_add,), generator=rng, device=rng.device).cpu().numpy()
            if k == 0:
                partner = base  # a single member: nothing to interpolate with, synthetic = copies
            else:
                nn = NearestNeighbors(n_neighbors=k + 1).fit(feats[members])
                neighbours = nn.kneighbors(feats[members], return_distance=False)[:, 1:]  # drop self
                col = torch.randint(k, (n_add,), generator=rng, device=rng.device).cpu().numpy()
                partner = neighbours[base, col]
            lam = torch.rand(n_add, 1, generator=rng, device=rng.device).to(h.device, h.dtype)
            h_i = h[torch.as_tensor(members[base], device=h.device)]
            h_j = h[torch.as_tensor(members[partner], device=h.device)]
            new_h.append(h_i + lam * (h_j - h_i))
            new_y.append(torch.full((n_add,), cls, dtype=y.dtype, device=y.device))
        return torch.cat(new_h), torch.cat(new_y)


@register_remedy
class Mixup(Remedy):
    """Embedding mixup with soft labels, lam ~ Beta(a, a) (Zhang et al. ICLR 2018; manifold mixup, Verma et al. ICML 2019)."""

    name = "mixup"
    # mixup_alpha, not alpha: 'focal+mixup' is a valid combination and focal has its own alpha.
    # 1.0 (lam uniform on [0, 1]) is the mixup paper's CIFAR setting and Remix's (Chou et al. 2020).
    spec = (Param("mixup_alpha", float, 1.0, "lam ~ Beta(mixup_alpha, mixup_alpha)", Range(0, low_open=True)),)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.alpha = self.p["mixup_alpha"]

    def synthesize(self, h, y, rng):
        """Originals (one-hot) plus one mixed pair per item: partner from a random permutation, one lam per call."""
        target = y if y.dtype.is_floating_point else F.one_hot(y, self.ctx.num_classes).to(h.dtype)
        # torch's Beta sampler takes no Generator; a numpy generator seeded from it stays deterministic
        lam = float(np.random.default_rng(draw_seed(rng)).beta(self.alpha, self.alpha))
        perm = torch.randperm(h.size(0), generator=rng, device=rng.device).to(h.device)
        mixed_h = lam * h + (1.0 - lam) * h[perm]
        mixed_t = lam * target + (1.0 - lam) * target[perm]
        return torch.cat([h, mixed_h]), torch.cat([target, mixed_t])
