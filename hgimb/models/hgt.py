"""HGT (Hu et al., WWW 2020) with PyG's ``HGTConv``.

Input: ``HeteroInput`` (features projected to ``hidden``, learnable embeddings for featureless
types), then ``layers`` x ``HGTConv(hidden, hidden, heads)`` with dropout between layers; the
target types' last-layer embeddings are returned.

Without pyg-lib (``torch_geometric.typing.WITH_SEGMM`` false, as here) PyG's ``HGTConv`` still
runs: its relation-specific key/value maps (``HeteroLinear`` over ``heads x edge types``
segments) fall back to a loop that writes slices of one output tensor. That loop is correct but
slow on CPU: the backward of every slice allocates and zero-fills a full-size gradient (48
segments on Freebase: 80% of an epoch went to ``mm``/``copy_``/``fill_`` of those slices).
:class:`HGTConvNoSegmm` replaces just that step by one block-diagonal matmul per edge type with
the same weights (identical outputs, tested; several times faster per Freebase epoch on CPU);
with pyg-lib present the stock PyG path runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
import torch_geometric.typing
from torch_geometric.nn import HGTConv
from torch_geometric.utils import softmax

from ..errors import HgimbError
from .base import GraphModel, HeteroInput, gather_targets
from ..params import Param
from .registry import register_model

ATTENTION = ("joint", "relation")
USES_SEGMENT_MATMUL = bool(getattr(torch_geometric.typing, "WITH_SEGMM", False))


class HGTConvNoSegmm(HGTConv):
    """``HGTConv`` computing the relation-specific key/value maps with one block-diagonal matmul
    per edge type when pyg-lib's segment matmul is unavailable (same parameters and results), and
    optionally normalising attention per relation (``relation_softmax=True``)."""

    def __init__(self, *args, relation_softmax: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.relation_softmax = bool(relation_softmax)
        self._edge_relation = None  # relation id of every edge, in propagate's edge order

    def _construct_src_node_feat(self, k_dict, v_dict, edge_index_dict):
        if self.relation_softmax:
            # construct_bipartite_edge_index concatenates the edge types in edge_index_dict order
            self._edge_relation = torch.cat([
                torch.full((ei.size(1),), self.edge_types_map[et], dtype=torch.long, device=ei.device)
                for et, ei in edge_index_dict.items()])
        return self._src_feat(k_dict, v_dict, edge_index_dict)

    def message(self, k_j, q_i, v_j, edge_attr, index, ptr, size_i):
        if not self.relation_softmax:
            return super().message(k_j, q_i, v_j, edge_attr, index, ptr, size_i)
        relations = len(self.edge_types)
        group = index * relations + self._edge_relation
        alpha = (q_i * k_j).sum(dim=-1) * edge_attr / math.sqrt(q_i.size(-1))
        alpha = softmax(alpha, group, num_nodes=size_i * relations)
        # mean over the relations that reach each destination node (the 'add' aggregation sums)
        present = torch.zeros(size_i * relations, dtype=torch.bool, device=index.device)
        present[group] = True
        reached = present.view(size_i, relations).sum(1).clamp_(min=1).to(alpha.dtype)
        alpha = alpha / reached[index].unsqueeze(-1)
        return (v_j * alpha.unsqueeze(-1)).view(-1, self.out_channels)

    def _src_feat(self, k_dict, v_dict, edge_index_dict):
        if USES_SEGMENT_MATMUL:
            return super()._construct_src_node_feat(k_dict, v_dict, edge_index_dict)
        heads, dim = self.heads, self.out_channels // self.heads
        num_edge_types = len(self.edge_types)
        # HeteroLinear weight [heads * edge types, dim, dim], type index = head * E + edge type
        w_k = self.k_rel.weight.view(heads, num_edge_types, dim, dim)
        w_v = self.v_rel.weight.view(heads, num_edge_types, dim, dim)
        ks, vs, offset, cumsum = [], [], {}, 0
        for edge_type in edge_index_dict.keys():
            src = edge_type[0]
            e = self.edge_types_map[edge_type]
            n = k_dict[src].size(0)
            offset[edge_type] = cumsum
            cumsum += n
            # per-head dim x dim maps as one block-diagonal matrix: one dense GEMM per edge type
            # explicit width: a sampled subgraph may hold no node of a type (reshape(0, -1) is ambiguous)
            ks.append((k_dict[src].reshape(n, heads * dim) @ torch.block_diag(*w_k[:, e])).view(n, heads, dim))
            vs.append((v_dict[src].reshape(n, heads * dim) @ torch.block_diag(*w_v[:, e])).view(n, heads, dim))
        return torch.cat(ks, 0), torch.cat(vs, 0), offset


class HGT(GraphModel):
    @property
    def num_hops(self) -> int:  # one hop per convolution
        return len(self.convs)

    def __init__(self, task, cfg):
        hidden, heads = int(cfg.hidden), int(cfg.heads)
        if hidden % heads:
            raise HgimbError(f"hgt needs --hidden divisible by --heads (got hidden {hidden}, heads {heads})")
        attention = cfg.options["attention"]  # validated against the registered params
        super().__init__(hidden, task.num_classes)
        self.target_types = list(task.target_types)
        self.dropout = float(cfg.dropout)
        self.input = HeteroInput(task.data, hidden)
        metadata = (list(task.data.node_types), list(task.data.edge_types))
        self.convs = nn.ModuleList(HGTConvNoSegmm(hidden, hidden, metadata, heads=heads,
                                                  relation_softmax=attention == "relation")
                                   for _ in range(max(int(cfg.layers), 1)))

    def encode(self, data) -> torch.Tensor:
        x_dict = {k: F.relu(v) for k, v in self.input(data).items()}
        edge_index_dict = {et: data[et].edge_index for et in data.edge_types}
        for conv in self.convs:
            x_dict = {k: F.dropout(v, self.dropout, self.training) for k, v in x_dict.items()}
            out = conv(x_dict, edge_index_dict)
            # a type that receives no message keeps its previous embedding
            x_dict = {k: (out.get(k) if out.get(k) is not None else v) for k, v in x_dict.items()}
        return gather_targets(x_dict, data, self.target_types)


@register_model("hgt", kinds=("node",), help="HGT (Hu et al. WWW 2020), PyG HGTConv",
                params=(Param("attention", str, "joint", "attention softmax over all relations or per relation",
                              choices=ATTENTION),),
                # the HGT-DGL code behind HGB's numbers: softmax per relation, lr 0.005; node types without
                # attributes get metapath2vec inputs (with id embeddings HGT stays at the majority class
                # on Freebase: BENCHMARKS section 4)
                defaults={"lr": 0.005, "model_options": {"attention": "relation"}, "features": "metapath2vec"})
def build_hgt(task, cfg):
    return HGT(task, cfg)
