"""What every model is: an encoder to per-item embeddings plus a linear head.

Splitting ``forward`` into ``encode`` and ``head`` lets remedies work in embedding space
(SMOTE / mixup feed synthetic embeddings to the head only) and lets ``prior-bias`` set the
head's bias.

Node tasks: ``encode(data)`` takes a ``HeteroData`` (the full graph, or a sampled subgraph
whose first ``data[t].batch_size`` nodes of each target type are the seeds) and returns the
embeddings of the target items in Task item order (``[num_items, out_dim]``; seeds only for a
sampled subgraph). Graph tasks: ``encode(batch)`` takes a PyG ``Batch`` and returns
``[num_graphs, out_dim]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from .sparse.cache import GraphCache
from .sparse.csr import FixedAdjacency, spmm

# Features sparser than this go through a CSR product instead of a dense matmul: HGB's
# bag-of-words features (ACM: 1,902 columns, 4-6% non-zero) made the dense input projection
# and its weight gradient ~80% of an RGCN epoch; the CSR product is exact (same sums).
SPARSE_INPUT_MAX_DENSITY = 0.25
SPARSE_INPUT_MIN_COLUMNS = 64


@dataclass
class ModelConfig:
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.5
    heads: int = 4
    options: Dict[str, Any] = field(default_factory=dict)  # model-specific extras (metapaths, ...)


class GraphModel(nn.Module):
    """Base class: subclasses set ``self.out_dim`` and implement ``encode``."""

    def __init__(self, out_dim: int, num_classes: int):
        super().__init__()
        self.out_dim = out_dim
        self.head = nn.Linear(out_dim, num_classes)

    def encode(self, inputs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, inputs) -> torch.Tensor:
        return self.head(self.encode(inputs))

    def reset_parameters(self) -> None:
        # Top-down: a module with its own reset_parameters resets its whole subtree (so
        # HeteroInput's xavier init is not overwritten by nn.Embedding's N(0, 1) afterwards).
        def reset(module):
            for child in module.children():
                if hasattr(child, "reset_parameters"):
                    child.reset_parameters()
                else:
                    reset(child)

        reset(self)


def seed_count(data, node_type: str) -> int:
    """Number of seed nodes of ``node_type`` in ``data`` (all nodes for a full graph)."""
    store = data[node_type]
    batch_size = getattr(store, "batch_size", None)
    return int(batch_size) if batch_size is not None else int(store.num_nodes)


def needed_node_types(node_types, edge_types, target_types, num_layers: int) -> List[List[str]]:
    """``[input types, output types of layer 1, ..., of the last layer]``, worked out backwards
    from the targets: a layer computes only the node types that later layers read."""
    needed = [set(target_types)]  # outputs of the last layer
    for _ in range(num_layers):  # ... back to the inputs of the first layer
        below = set(needed[0])
        below.update(et[0] for et in edge_types if et[2] in needed[0])
        needed.insert(0, below)
    return [[t for t in node_types if t in layer] for layer in needed]


def gather_targets(h_dict: Dict[str, torch.Tensor], data, target_types) -> torch.Tensor:
    """Concatenate the target-type embeddings in item order (seeds only when sampled)."""
    parts = [h_dict[t][: seed_count(data, t)] for t in target_types]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


class HeteroInput(nn.Module):
    """Input features for every node type: a linear projection of the given features, or a
    learnable embedding per node for featureless types (Freebase has no attributes at all).

    Sampled subgraphs carry ``n_id`` (the original node ids), which index the embedding tables
    (with ``sparse_embeddings`` on, through ``F.embedding(sparse=True)``: a row-sparse gradient).
    Sparse wide features (bag-of-words) are projected with a cached CSR product
    (:func:`sparse_rows`), which gives the same values and gradients as the dense ``nn.Linear``.
    """

    def __init__(self, data, out_dim: int):
        super().__init__()
        self.out_dim = out_dim
        self.proj = nn.ModuleDict()
        self.embed = nn.ModuleDict()
        for node_type in data.node_types:
            store = data[node_type]
            x = getattr(store, "x", None)
            if x is not None:
                self.proj[node_type] = nn.Linear(x.size(-1), out_dim)
            else:
                self.embed[node_type] = nn.Embedding(int(store.num_nodes), out_dim)
        self._sparse = GraphCache(maxsize=16)  # feature tensor -> its CSR form (or None: dense)
        # row-sparse gradients for the tables of sampled subgraphs (set by
        # hgimb.engine.optim.configure_sparse; the optimiser must then accept sparse gradients)
        self.sparse_embeddings = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in self.proj.values():
            lin.reset_parameters()
        for emb in self.embed.values():
            nn.init.xavier_uniform_(emb.weight)

    def forward(self, data) -> Dict[str, torch.Tensor]:
        out = {}
        for node_type in data.node_types:
            store = data[node_type]
            if node_type in self.proj:
                out[node_type] = self._project(node_type, store.x)
            else:
                n_id = getattr(store, "n_id", None)
                weight = self.embed[node_type].weight
                if n_id is None:
                    out[node_type] = weight
                elif self.sparse_embeddings and weight.requires_grad:
                    out[node_type] = F.embedding(n_id, weight, sparse=True)  # gradient: the n_id rows only
                else:
                    out[node_type] = weight[n_id]
        return out

    def _project(self, node_type: str, x: torch.Tensor) -> torch.Tensor:
        lin = self.proj[node_type]
        if x.requires_grad or not x.is_floating_point():
            return lin(x)
        csr = self._sparse.get([x], node_type, lambda: sparse_rows(x))
        if csr is None:
            return lin(x)
        # x @ W^T + b; the gradient for W^T is x^T @ dY, a product with the cached transpose
        out = spmm(csr, lin.weight.t())
        return out if lin.bias is None else out + lin.bias


def sparse_rows(x: torch.Tensor):
    """``x`` as a constant CSR matrix when it is wide and sparse enough to gain from it, else None."""
    if x.dim() != 2 or x.size(1) < SPARSE_INPUT_MIN_COLUMNS or x.numel() == 0:
        return None
    nonzero = int(torch.count_nonzero(x))
    if nonzero > SPARSE_INPUT_MAX_DENSITY * x.numel():
        return None
    row, col = x.nonzero(as_tuple=True)
    return FixedAdjacency(row, col, x[row, col], tuple(x.shape))
