"""Homogeneous baselines for one-node-type graphs (Cora, CiteSeer): ``gcn`` and ``sage``.

The class-imbalanced node classification literature (GraphSMOTE, GraphENS, TAM, GraphSHA) uses
these backbones. ``encode`` is the standard ``layers``-layer network (dropout -> conv -> ReLU ->
dropout -> ... -> conv, PyG ``GCNConv`` / ``SAGEConv``) with the last conv ``hidden`` wide and no
activation; the linear head on top is equivalent to the usual class-wide last layer while giving
remedies a ``hidden``-dim embedding. All edge types of the one node type are merged and made
undirected (GCN's symmetric normalisation assumes it). Featureless graphs get a learnable
embedding per node.

Sampled subgraphs (``--batch-size``): the neighbour sampler follows in-edges, which on a graph
stored with both directions (Planetoid's are) are exactly the undirected neighbours, so the
sampled edges are used as they are (symmetrising them again would give every seed the nodes that
sampled *it* on top of its own fanout); a graph stored one-way is refused in mini-batch mode.
SAGE's mean then equals the full-graph output with fanout -1; GCN normalises by degrees in the
subgraph (as PyG's GCNConv on ``NeighborLoader`` batches), so the outermost hop's source degrees
differ from the full graph's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GCNConv, SAGEConv
from torch_geometric.utils import coalesce, is_undirected, to_undirected

from ..errors import HgimbError
from .base import GraphModel, seed_count
from .registry import register_model


def _check_one_type(task, name: str) -> str:
    node_types = list(task.data.node_types)
    if len(node_types) != 1:
        raise HgimbError(
            f"model '{name}' needs a graph with one node type, but '{task.name}' has "
            f"{len(node_types)} ({', '.join(node_types)}); use rgcn/gat/simple-hgn for heterogeneous graphs"
        )
    return node_types[0]


class HomogeneousGNN(GraphModel):
    def __init__(self, task, cfg, conv: str):
        node_type = _check_one_type(task, conv)
        hidden = int(cfg.hidden)
        super().__init__(hidden, task.num_classes)
        self.node_type = node_type
        store = task.data[self.node_type]
        x = getattr(store, "x", None)
        if x is None:
            self.embed = nn.Embedding(int(store.num_nodes), hidden)
            in_dim = hidden
        else:
            self.embed = None
            in_dim = int(x.size(-1))
        self.dropout = float(cfg.dropout)
        layers = max(int(cfg.layers), 1)
        dims = [in_dim] + [hidden] * layers
        if conv == "gcn":
            self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        else:
            self.convs = nn.ModuleList(SAGEConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self._edge_cache = None  # (edge_index tensor objects, undirected edge_index)
        stored = [task.data[et].edge_index for et in task.data.edge_types]
        self._stored_undirected = is_undirected(torch.cat(stored, 1), num_nodes=int(store.num_nodes)) if stored else True
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)

    def _edge_index(self, data) -> torch.Tensor:
        parts = [data[et].edge_index for et in data.edge_types]
        if self._edge_cache is not None and len(parts) == len(self._edge_cache[0]) and all(
                a is b for a, b in zip(parts, self._edge_cache[0])):
            return self._edge_cache[1]
        n = int(data[self.node_type].num_nodes)
        ei = torch.cat(parts, 1) if parts else torch.empty(2, 0, dtype=torch.long)
        if getattr(data[self.node_type], "batch_size", None) is None:
            ei = to_undirected(ei, num_nodes=n)
        elif self._stored_undirected:  # sampled: the in-edges already are the neighbours (see above)
            ei = coalesce(ei, num_nodes=n)
        else:
            raise HgimbError("gcn/sage mini-batch training needs the graph stored with both edge directions "
                             "(the sampler follows in-edges); drop --batch-size to train full-batch")
        self._edge_cache = (parts, ei)
        return ei

    def encode(self, data) -> torch.Tensor:
        store = data[self.node_type]
        if self.embed is None:
            h = store.x
        else:
            n_id = getattr(store, "n_id", None)
            h = self.embed.weight if n_id is None else self.embed.weight[n_id]
        edge_index = self._edge_index(data)
        for i, conv in enumerate(self.convs):
            h = F.dropout(h, self.dropout, self.training)
            h = conv(h, edge_index)
            if i < len(self.convs) - 1:
                h = F.relu(h)
        return h[: seed_count(data, self.node_type)]


@register_model("gcn", kinds=("node",), help="GCN (Kipf & Welling 2017), PyG GCNConv; one node type")
def build_gcn(task, cfg):
    return HomogeneousGNN(task, cfg, "gcn")


@register_model("sage", kinds=("node",), help="GraphSAGE (Hamilton et al. 2017), PyG SAGEConv (mean); one node type")
def build_sage(task, cfg):
    return HomogeneousGNN(task, cfg, "sage")
