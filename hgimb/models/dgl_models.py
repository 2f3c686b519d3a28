"""DGL-backed models: ``dgl-rgcn`` and ``dgl-gat``, the DGL versions of ``rgcn`` and ``gat``.

They let a DGL user put DGL layers in the same leaderboard as hgimb's PyG models: same
contract (:mod:`hgimb.models.base`: ``encode`` -> head), so every remedy, the bench runner,
mini-batch training and the metrics work unchanged. The Task's ``HeteroData`` (the full graph or
a sampled subgraph) is turned into a DGL heterograph once per graph (cached) and the layers are
DGL's:

- ``dgl-rgcn``: per layer ``HeteroGraphConv({rel: GraphConv(norm="right", bias=False)},
  aggregate="sum")`` plus a per-node-type ``nn.Linear`` self-loop with bias, then ReLU and
  dropout: ``h_i' = h_i W_root[t] + b[t] + sum_r mean_{j in N_r(i)} h_j W_r``, the maths of
  hgimb's ``rgcn``. Edge weights (``edge_weight``, where the graph has them and
  ``use_edge_weight``) give the weighted mean ``sum_j w_ij h_j / sum_j w_ij`` through
  ``EdgeWeightNorm(norm="right")`` and ``GraphConv(norm="none")`` (hgimb's weighted mean).
- ``dgl-gat``: per layer ``HeteroGraphConv({rel: GATConv(heads, attn_drop=attn_dropout,
  allow_zero_in_degree=True)}, aggregate=aggr)`` (no self-loops; separate source/target
  projections when the types differ, as PyG's bipartite ``GATConv``), heads concatenated, plus a
  per-type ``nn.Linear`` skip, then ELU and dropout: the structure of hgimb's ``gat``.

Both use :class:`hgimb.models.base.HeteroInput` for input features (a linear projection, or a
learnable embedding for featureless types such as Freebase's) and the same options as their
PyG twins (``input_dropout``, ``use_edge_weight``; ``aggr``, ``attn_dropout``,
``negative_slope``). Differences from the PyG models: DGL's ``HeteroGraphConv`` computes every
node type with an incoming relation in every layer (hgimb's versions skip types no later layer
reads and compute only target rows in the last layer), and parameter initialisation follows
DGL's layers (xavier-uniform; GATConv: gain sqrt(2)), so per-seed numbers differ while the
distributions should agree (BENCHMARKS.md, "DGL parity").

Without DGL installed, building either model raises a one-line HgimbError saying how to
install it (``pip install -e ".[dgl]"``); the names stay registered so that the error is that
and not "unknown model".
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dgl_io import import_dgl
from ..errors import HgimbError
from .base import GraphModel, HeteroInput, ModelConfig, gather_targets
from .gat import GAT_PARAMS, gat_width  # options and argument checks shared with the PyG GAT
from .rgcn import RGCN_PARAMS
from .registry import register_model
from .sparse.cache import GraphCache
from .sparse.dense import dropout

EdgeType = Tuple[str, str, str]


def relation_keys(edge_types: Sequence[EdgeType]) -> List[str]:
    """Relation names unique over the graph, by position (``r0``, ``r1``, ...): DGL's
    ``HeteroGraphConv`` looks its per-relation modules and keyword arguments up by relation name,
    HGB repeats names (``to_paper`` from author, subject and term), and ``nn.ModuleDict`` keys
    may not contain dots (user-named types might)."""
    return [f"r{i}" for i in range(len(edge_types))]


class DGLGraphCache:
    """HeteroData (or a sampled subgraph of it) -> the DGL heterograph the layers run on, with
    unique relation names; built once per graph (keyed on the edge tensors, like the PyG models'
    plans) and normalised edge weights where ``weighted``."""

    def __init__(self, edge_types: Sequence[EdgeType], node_types: Sequence[str], weighted: bool):
        self.edge_types = [tuple(et) for et in edge_types]
        self.keys = relation_keys(self.edge_types)
        self.node_types = list(node_types)
        self.weighted = weighted
        self._cache = GraphCache(maxsize=16)

    def get(self, data, device: torch.device):
        edge_indices = [data[et].edge_index for et in self.edge_types]
        weights = [getattr(data[et], "edge_weight", None) for et in self.edge_types] if self.weighted else []
        sizes = tuple(int(data[t].num_nodes) for t in self.node_types)
        return self._cache.get(edge_indices + weights, (sizes, str(device)),
                               lambda: self._build(edge_indices, weights, sizes, device))

    def _build(self, edge_indices, weights, sizes, device):
        dgl = import_dgl("dgl models")
        num_nodes = dict(zip(self.node_types, sizes))
        graph = dgl.heterograph(
            {(et[0], key, et[2]): (ei[0], ei[1]) for et, key, ei in zip(self.edge_types, self.keys, edge_indices)},
            num_nodes_dict=num_nodes, idtype=torch.int64, device=device)
        norm = {}
        if self.weighted:
            from dgl.nn import EdgeWeightNorm

            normalise = EdgeWeightNorm(norm="right")
            for key, ei, w in zip(self.keys, edge_indices, weights):
                w = torch.ones(ei.size(1), device=device) if w is None else w.to(device=device, dtype=torch.float32)
                norm[key] = {"edge_weight": normalise(graph[key], w)} if ei.size(1) else {}
        return graph, norm


class _DGLHeteroModel(GraphModel):
    """Shared frame: HeteroInput -> ``convs`` with per-type linear skips -> target rows."""

    @property
    def num_hops(self) -> int:  # one hop per HeteroGraphConv
        return len(self.convs)

    def __init__(self, data, target_types: Sequence[str], num_classes: int, width: int, layers: int,
                 dropout: float, input_dropout: float, weighted: bool = False):
        super().__init__(width, num_classes)
        self.node_types = list(data.node_types)
        self.edge_types = [tuple(et) for et in data.edge_types]
        self.target_types = list(target_types)
        self.dropout = float(dropout)
        self.input_dropout = float(input_dropout)
        self.input = HeteroInput(data, width)
        self.convs = nn.ModuleList()  # one HeteroGraphConv per layer (num_hops counts them)
        self.skips = nn.ModuleList(nn.ModuleDict({t: nn.Linear(width, width) for t in self.node_types})
                                   for _ in range(layers))
        self.graphs = DGLGraphCache(self.edge_types, self.node_types, weighted)

    def reset_parameters(self) -> None:
        # explicit order (see RGCN.reset_parameters): HeteroInput's xavier embeddings stay
        self.input.reset_parameters()
        for conv, skip in zip(self.convs, self.skips):
            for mod in conv.mods.values():
                mod.reset_parameters()
            for lin in skip.values():
                lin.reset_parameters()
        self.head.reset_parameters()

    def _messages(self, conv, graph, norm, x: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def _activation(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_all(self, data) -> Dict[str, torch.Tensor]:
        # DGL's GATConv refuses autocast's mix of bfloat16 features and float32 attention: the
        # DGL models run in float32 under --amp
        with torch.autocast(self.head.weight.device.type, enabled=False):
            return self._encode_all(data)

    def _encode_all(self, data) -> Dict[str, torch.Tensor]:
        x = self.input(data)
        x = {t: dropout(h, self.input_dropout, self.training) for t, h in x.items()}
        graph, norm = self.graphs.get(data, next(iter(x.values())).device)
        for conv, skip in zip(self.convs, self.skips):
            messages = self._messages(conv, graph, norm, x)
            out = {}
            for t in self.node_types:
                h = skip[t](x[t])
                if t in messages:
                    h = h + messages[t]
                out[t] = dropout(self._activation(h), self.dropout, self.training)
            x = out
        return x

    def encode(self, data) -> torch.Tensor:
        return gather_targets(self.encode_all(data), data, self.target_types)


class DGLRGCN(_DGLHeteroModel):
    """RGCN from DGL's ``HeteroGraphConv(GraphConv)`` (module docstring)."""

    def __init__(self, data, target_types: Sequence[str], num_classes: int, hidden: int = 64, layers: int = 2,
                 dropout: float = 0.5, input_dropout: float = 0.0, use_edge_weight: bool = True):
        if layers < 1:
            raise HgimbError(f"dgl-rgcn needs at least 1 layer, got layers={layers}")
        weighted = bool(use_edge_weight) and any(getattr(data[et], "edge_weight", None) is not None
                                                 for et in data.edge_types)
        super().__init__(data, target_types, num_classes, hidden, layers, dropout, input_dropout, weighted)
        import_dgl("model 'dgl-rgcn'")
        from dgl.nn import GraphConv, HeteroGraphConv

        norm = "none" if weighted else "right"  # weighted: EdgeWeightNorm("right") weights instead
        for _ in range(layers):
            self.convs.append(HeteroGraphConv(
                {key: GraphConv(hidden, hidden, norm=norm, weight=True, bias=False, allow_zero_in_degree=True)
                 for key in self.graphs.keys}, aggregate="sum"))

    def _messages(self, conv, graph, norm, x):
        return conv(graph, x, mod_kwargs=norm if norm else None)

    def _activation(self, h):
        return torch.relu(h)


class DGLGAT(_DGLHeteroModel):
    """Heterogeneous GAT from DGL's ``HeteroGraphConv(GATConv)`` (module docstring)."""

    def __init__(self, data, target_types: Sequence[str], num_classes: int, hidden: int = 64, layers: int = 2,
                 heads: int = 4, dropout: float = 0.5, attn_dropout: float | None = None, input_dropout: float = 0.0,
                 aggr: str = "sum", negative_slope: float = 0.2):
        head_dim, width = gat_width("dgl-gat", hidden, layers, heads, aggr)
        super().__init__(data, target_types, num_classes, width, layers, dropout, input_dropout)
        import_dgl("model 'dgl-gat'")
        from dgl.nn import GATConv, HeteroGraphConv

        attn = self.dropout if attn_dropout is None else float(attn_dropout)
        for _ in range(layers):
            self.convs.append(HeteroGraphConv({
                key: GATConv(width if et[0] == et[2] else (width, width), head_dim, heads,
                                                          feat_drop=0.0, attn_drop=attn, negative_slope=negative_slope,
                                                          allow_zero_in_degree=True, bias=True)
                for key, et in zip(self.graphs.keys, self.edge_types)
            }, aggregate=aggr))

    def _messages(self, conv, graph, norm, x):
        # GATConv returns [N, heads, head_dim]: concatenate the heads
        return {t: h.flatten(1) for t, h in conv(graph, x).items()}

    def _activation(self, h):
        return F.elu(h)


@register_model("dgl-rgcn", kinds=("node",), help="RGCN from DGL layers: HeteroGraphConv(GraphConv), per-type self-loop (needs dgl)",
                params=RGCN_PARAMS)
def build_dgl_rgcn(task, cfg: ModelConfig) -> DGLRGCN:
    import_dgl("model 'dgl-rgcn'")
    return DGLRGCN(task.data, task.target_types, task.num_classes, hidden=cfg.hidden, layers=cfg.layers,
                   dropout=cfg.dropout, **cfg.options)


@register_model("dgl-gat", kinds=("node",), help="heterogeneous GAT from DGL layers: HeteroGraphConv(GATConv), per-type skip (needs dgl)",
                params=GAT_PARAMS)
def build_dgl_gat(task, cfg: ModelConfig) -> DGLGAT:
    import_dgl("model 'dgl-gat'")
    return DGLGAT(task.data, task.target_types, task.num_classes, hidden=cfg.hidden, layers=cfg.layers,
                  heads=cfg.heads, dropout=cfg.dropout, **cfg.options)
