"""Heterogeneous GAT: one PyG ``GATConv`` per relation inside ``HeteroConv``.

Each layer: for every relation ``src -> dst`` a multi-head ``GATConv`` (no added self-loops —
relations may be bipartite; separate source/target projections when the types differ), the
relations into a node type combined by ``HeteroConv`` (``aggr`` ``sum`` or ``mean``), plus a
per-type linear skip connection (the self-loop: node types without incoming relations keep
their own features), then ELU and dropout. Heads are concatenated: each head has
``ceil(hidden / heads)`` channels, so the embedding size is ``heads * ceil(hidden / heads)``.
Edge weights are ignored (attention learns the weighting).

Like :mod:`hgimb.models.rgcn`, a layer only computes the node types later layers (or the
target) need, and the last layer only attends over edges into the target rows (the seeds of a
sampled subgraph). Works on one-node-type graphs (Cora). Each layer runs through
:func:`hgimb.models.fused_gat.hetero_gat`: ``HeteroConv``'s parameters, maths and dropout
draws without per-edge message tensors (HGB ACM: epochs 3x faster on CPU).

``options``: ``aggr`` (``sum``), ``attn_dropout`` (dropout on attention coefficients, default
``dropout``), ``input_dropout`` (0), ``negative_slope`` (0.2).
"""
from __future__ import annotations

import math
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv, HeteroConv
from torch_geometric.nn.conv.hetero_conv import group

from ..errors import HgimbError
from ..imbalance.base import HiddenGraph, HiddenRelation
from .base import GraphModel, HeteroInput, ModelConfig, gather_targets, needed_node_types, seed_count, single_target_type
from ..params import Param, Range
from .registry import register_model
from .rgcn import INPUT_DROPOUT
from .fused_gat import RelationGraph, gat_relation, hetero_gat, supported
from .sparse.cache import GraphCache
from .sparse.dense import dropout

AGGRS = ("sum", "mean")


def gat_width(name: str, hidden: int, layers: int, heads: int, aggr: str):
    """Check a heterogeneous GAT's arguments; returns (per-head width, total width): ``hidden``
    rounded up to a multiple of ``heads``."""
    if layers < 1:
        raise HgimbError(f"{name} needs at least 1 layer, got layers={layers}")
    if heads < 1:
        raise HgimbError(f"{name} needs at least 1 attention head, got heads={heads}")
    if aggr not in AGGRS:
        raise HgimbError(f"{name}: unknown aggr '{aggr}'; valid: {', '.join(AGGRS)}")
    head_dim = math.ceil(hidden / heads)
    return head_dim, head_dim * heads


class HeteroGAT(GraphModel):
    extends_hidden = True  # encode_extended: synthetic target nodes before the last layer (GraphSMOTE)

    @property
    def num_hops(self) -> int:  # one hop per convolution
        return len(self.convs)

    def __init__(self, data, target_types: Sequence[str], num_classes: int, hidden: int = 64, layers: int = 2,
                 heads: int = 4, dropout: float = 0.5, attn_dropout: float | None = None, input_dropout: float = 0.0,
                 aggr: str = "sum", negative_slope: float = 0.2):
        head_dim, width = gat_width("gat", hidden, layers, heads, aggr)
        super().__init__(width, num_classes)
        self.node_types = list(data.node_types)
        self.edge_types = [tuple(et) for et in data.edge_types]
        self.target_types = list(target_types)
        self.dropout = float(dropout)
        self.input_dropout = float(input_dropout)
        attn_dropout = self.dropout if attn_dropout is None else float(attn_dropout)
        self.input = HeteroInput(data, width)
        self.convs = nn.ModuleList()
        self.skips = nn.ModuleList()
        for _ in range(layers):
            with warnings.catch_warnings():
                # types with no incoming relation are expected: the skip connection updates them
                warnings.filterwarnings("ignore", message=".*do not occur as destination type.*")
                self.convs.append(HeteroConv({
                    et: GATConv(width if et[0] == et[2] else (width, width), head_dim, heads=heads, concat=True,
                                negative_slope=negative_slope, dropout=attn_dropout, add_self_loops=False)
                    for et in self.edge_types
                }, aggr=aggr))
            self.skips.append(nn.ModuleDict({t: nn.Linear(width, width) for t in self.node_types}))
        self._needed = self._needed_types()
        self._cache = GraphCache(maxsize=64)  # the plan and each relation's sorted edges

    def reset_parameters(self) -> None:
        # explicit order (see RGCN.reset_parameters)
        self.input.reset_parameters()
        for conv, skip in zip(self.convs, self.skips):
            conv.reset_parameters()
            for lin in skip.values():
                lin.reset_parameters()
        self.head.reset_parameters()

    def _needed_types(self) -> List[List[str]]:
        return needed_node_types(self.node_types, self.edge_types, self.target_types, len(self.convs))

    def _plan(self, data):
        """Per layer: (rows per output type, edge_index_dict of the relations it needs)."""
        edge_indices = [data[et].edge_index for et in self.edge_types]
        sizes = tuple(int(data[t].num_nodes) for t in self.node_types)
        seeds = tuple(seed_count(data, t) for t in self.target_types)
        return self._cache.get(edge_indices, (sizes, seeds), lambda: self._build_plan(data, edge_indices))

    def _build_plan(self, data, edge_indices):
        plan, last = [], len(self.convs) - 1
        for layer, types in enumerate(self._needed[1:]):
            rows = {t: (seed_count(data, t) if layer == last else int(data[t].num_nodes)) for t in types}
            edges = {}
            for et, edge_index in zip(self.edge_types, edge_indices):
                if et[2] not in rows:  # (empty relations stay: they count in aggr="mean")
                    continue
                if rows[et[2]] < int(data[et[2]].num_nodes):
                    edge_index = edge_index[:, edge_index[1] < rows[et[2]]]
                edges[et] = edge_index
            plan.append((rows, edges))
        return plan

    def encode_all(self, data) -> Dict[str, torch.Tensor]:
        return self._layers(data)[0]

    def _layers(self, data, stop: Optional[int] = None):
        """The input and the first ``stop`` layers (all by default): ``(x, plan)``, the output of
        the last layer run and every layer's plan."""
        x = self.input(data)
        x = {t: dropout(x[t], self.input_dropout, self.training) for t in self._needed[0]}
        plan = self._plan(data)
        for conv, skip, (rows, edges) in list(zip(self.convs, self.skips, plan))[:stop]:
            x = self._layer(conv, skip, x, rows, edges)
        return x, plan

    def _layer(self, conv, skip, x, rows, edges) -> Dict[str, torch.Tensor]:
        # HeteroConv(x, edges) fused (same parameters and dropout draws; see fused_gat.py)
        messages = hetero_gat(conv, x, edges, rows, self._cache) if edges else {}
        out = {}
        for t, n in rows.items():
            h = skip[t](x[t] if n == x[t].size(0) else x[t][:n])  # a full slice costs a copy in backward
            if t in messages:
                h = h + messages[t]  # hetero_gat computed the first n rows only
            out[t] = dropout(F.elu(h), self.dropout, self.training)
        return out

    def encode(self, data) -> torch.Tensor:
        return gather_targets(self.encode_all(data), data, self.target_types)

    def encode_extended(self, data, extend) -> Tuple[torch.Tensor, torch.Tensor]:
        """``encode(data)`` plus synthetic target-type nodes inserted before the last layer (a
        remedy's ``hidden`` hook: GraphSMOTE), as :meth:`RGCN.encode_extended
        <hgimb.models.rgcn.RGCN.encode_extended>` does: ``extend`` receives the target type's input
        rows to the last layer and every relation into it with its source rows, and returns the new
        rows with their in-edges per relation. A new node goes through the last layer as a real one
        would with those in-edges: per relation, ``GATConv`` attention over its in-neighbours (no
        self-loop; a relation without kept edges gives the conv's bias), relations combined by
        ``aggr``, plus the type's skip connection, ELU, dropout. Real nodes receive nothing from
        the new ones."""
        target = single_target_type("gat", self.target_types)
        x, plan = self._layers(data, stop=len(self.convs) - 1)
        conv, skip, (rows, edges) = self.convs[-1], self.skips[-1], plan[-1]
        into = [et for et in edges if et[2] == target]
        relations = {et: HiddenRelation(x[et[0]], edges[et]) for et in into}
        new = extend(HiddenGraph(x[target], relations))
        out = gather_targets(self._layer(conv, skip, x, rows, edges), data, self.target_types)
        count = new.h.size(0)
        messages = []
        for et in into:
            relation = conv.convs[et]
            if not supported(relation):
                raise HgimbError(f"gat: relation {et} is not a plain GATConv; synthetic nodes cannot be inserted")
            src, dst = (i.to(new.h.device) for i in new.relation(et))
            graph = RelationGraph(torch.stack([src, dst]), x[et[0]].size(0), count, relation.heads)
            messages.append(gat_relation(relation, x[et[0]], new.h, graph))
        h = skip[target](new.h)
        if messages:
            h = h + group(messages, conv.aggr)
        return out, dropout(F.elu(h), self.dropout, self.training)


ATTN_DROPOUT = Param("attn_dropout", float, None, "dropout on attention coefficients (default: --dropout)",
                     Range(0, 1, high_open=True), none=True)
# --model-option parameters of gat (and dgl-gat)
GAT_PARAMS = (ATTN_DROPOUT, INPUT_DROPOUT, Param("aggr", str, "sum", "how relations into a type combine", choices=AGGRS),
              Param("negative_slope", float, 0.2, "LeakyReLU slope of the attention scores", Range(0)))


@register_model("gat", kinds=("node",), help="heterogeneous GAT: GATConv per relation in HeteroConv, per-type skip",
                params=GAT_PARAMS)
def build_gat(task, cfg: ModelConfig) -> HeteroGAT:
    return HeteroGAT(task.data, task.target_types, task.num_classes, hidden=cfg.hidden, layers=cfg.layers,
                     heads=cfg.heads, dropout=cfg.dropout, **cfg.options)
