"""Pieces every crystal-graph GNN shares (``cgcnn``, ``gat``, ``roost``): the graph index of a
batch, and the hybrid readout's per-crystal branch (``data.u`` standardised with training
statistics, clipped, one linear layer + softplus, concatenated to the pooled embedding) with its
two ``--model-option`` parameters (``globals``, ``global_hidden``)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..params import Param, Range

GLOBAL_CLIP = 10.0  # standardised descriptors are clipped to +-10 sd: heavy tails must not dominate


GLOBAL_PARAMS = (  # --model-option parameters of the hybrid readout
    Param("globals", str, "concat", "per-crystal features (data.u): concat to the pooled embedding or ignore",
          choices=("concat", "none")),
    Param("global_hidden", int, 64, "width of the per-crystal feature branch", Range(1)),
)


def readout_stats(task, options: dict) -> Optional[tuple]:
    """Pops ``globals`` from a model's options: the training statistics of ``data.u`` for the
    hybrid readout (``concat``, and the graphs carry ``u``), else None."""
    return global_feature_stats(task) if options.pop("globals") == "concat" else None


def graph_index(batch) -> tuple[torch.Tensor, int]:
    """(graph index per node, number of graphs) for a Batch or a single Data."""
    index = getattr(batch, "batch", None)
    if index is None:
        return torch.zeros(batch.num_nodes, dtype=torch.long, device=batch.x.device), 1
    return index, int(batch.num_graphs)


def global_feature_stats(task) -> Optional[tuple]:
    """(mean, std) of the per-crystal features ``data.u`` over the *training* graphs (all graphs
    before a split), or None when the graphs carry none. Label-free, fixed at build time, so a
    graph's standardised input never depends on its batch."""
    if not task.graphs or getattr(task.graphs[0], "u", None) is None:
        return None
    train = task.split.get("train") if task.split else None
    rows = train.tolist() if train is not None and train.numel() else range(len(task.graphs))
    u = torch.cat([task.graphs[i].u for i in rows], dim=0).double()
    std = u.std(0, unbiased=False)
    return u.mean(0), torch.where(std > 1e-8, std, torch.ones_like(std))


def add_global_branch(model: nn.Module, global_stats: Optional[tuple], hidden: int) -> None:
    """The hybrid readout's per-crystal branch on ``model``: ``global_fc`` (None without
    ``global_stats``) and the training statistics ``global_mean`` / ``global_std`` as buffers."""
    model.global_fc = None
    if global_stats is not None:
        mean, std = global_stats
        model.register_buffer("global_mean", mean.float())
        model.register_buffer("global_std", std.float())
        model.global_fc = nn.Linear(mean.numel(), hidden)


def global_branch(model: nn.Module, u: torch.Tensor) -> torch.Tensor:
    """``softplus(global_fc(u standardised, clipped to +-GLOBAL_CLIP sd))``."""
    u = ((u - model.global_mean) / model.global_std).clamp(-GLOBAL_CLIP, GLOBAL_CLIP)
    return F.softplus(model.global_fc(u))
