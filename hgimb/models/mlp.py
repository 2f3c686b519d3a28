"""MLP baseline: each target node's own features only — it sees no graph structure.

Per target type the first layer is ``Linear(features, hidden)``, or, for a featureless type
(Freebase movies), a learnable embedding per node. Note what that means: a featureless target
gives the MLP nothing but a free vector per node, so it can fit the training labels but has no
information at all about unseen (validation/test) nodes — a "no structure, no features" floor,
useful to show how much the graph contributes. Then ``layers - 1`` shared
``Linear(hidden, hidden)``; ReLU and dropout after every layer. Sampled subgraphs: only the
seed rows are computed (embeddings are indexed through ``n_id``).

``options``: ``input_dropout`` (dropout on the raw features, default 0).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import HgimbError
from .base import GraphModel, ModelConfig, seed_count
from .registry import register_model
from .rgcn import INPUT_DROPOUT
from .sparse.dense import dropout


class MLP(GraphModel):
    num_hops = 0  # the target nodes' own features only

    def __init__(self, data, target_types: Sequence[str], num_classes: int, hidden: int = 64, layers: int = 2,
                 dropout: float = 0.5, input_dropout: float = 0.0):
        super().__init__(hidden, num_classes)
        if layers < 1:
            raise HgimbError(f"mlp needs at least 1 layer, got layers={layers}")
        self.target_types = list(target_types)
        self.dropout = float(dropout)
        self.input_dropout = float(input_dropout)
        self.proj = nn.ModuleDict()
        self.embed = nn.ModuleDict()
        for t in self.target_types:
            x = getattr(data[t], "x", None)
            if x is not None:
                self.proj[t] = nn.Linear(x.size(-1), hidden)
            else:
                self.embed[t] = nn.Embedding(int(data[t].num_nodes), hidden)
        self.hidden_layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for emb in self.embed.values():
            nn.init.xavier_uniform_(emb.weight)

    def _first_layer(self, data, node_type: str) -> torch.Tensor:
        store = data[node_type]
        n = seed_count(data, node_type)
        if node_type in self.proj:
            x = dropout(store.x[:n], self.input_dropout, self.training)
            return self.proj[node_type](x)
        weight = self.embed[node_type].weight
        n_id = getattr(store, "n_id", None)
        return weight[:n] if n_id is None else weight[n_id[:n]]

    def encode(self, data) -> torch.Tensor:
        parts = [self._first_layer(data, t) for t in self.target_types]
        h = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        h = dropout(torch.relu(h), self.dropout, self.training)
        for lin in self.hidden_layers:
            h = dropout(torch.relu(lin(h)), self.dropout, self.training)
        return h


@register_model("mlp", kinds=("node",), help="MLP on the target nodes' own features (no structure)",
                params=(INPUT_DROPOUT,))
def build_mlp(task, cfg: ModelConfig) -> MLP:
    return MLP(task.data, task.target_types, task.num_classes, hidden=cfg.hidden, layers=cfg.layers,
               dropout=cfg.dropout, **cfg.options)
