"""The model contract: what the engine needs from a model, declared by the model.

A model is an ``nn.Module`` with

* ``encode(inputs) -> Tensor [N, d]``: per-item embeddings. Node tasks: ``inputs`` is a
  ``HeteroData`` (the full graph, or a sampled subgraph whose first ``data[t].batch_size`` nodes
  of each target type are the seeds) and the rows are the target items in Task item order (the
  seeds only, for a sampled subgraph). Graph tasks: a PyG ``Batch``, one row per graph;
* ``head``: a module from embeddings to logits ``[N, num_classes]``; ``forward(inputs)`` is
  ``head(encode(inputs))``. Keeping the two apart lets remedies work in embedding space (SMOTE /
  mixup feed synthetic embeddings to the head only).

and, declared where they apply (read through the functions below, with the defaults they state):

* ``supports_neighbor_sampling`` (bool; default False): whether ``encode`` works on a
  neighbour-sampled subgraph (``--batch-size`` on node tasks); ``no_sampling_reason`` (str) is
  the one-line error shown otherwise;
* ``num_hops`` (int): how many hops of neighbours an item's output depends on; the sampler covers
  exactly that many (0: the item's own row only). Needed with ``supports_neighbor_sampling``;
* ``classifier_head() -> nn.Linear | None``: the linear layer whose bias holds the per-class
  offsets (``prior-bias`` sets it); default: ``head`` when it is an ``nn.Linear``, else None;
* ``no_weight_decay() -> list of parameters`` (optional): parameters exempt from weight decay.
* ``graph_attributes`` (tuple of str; default None = all): graph tasks, the ``Data`` attributes
  ``encode`` reads; mini-batches are collated from those only (``roost`` reads no edges).
* ``encode_rows(data, rows) -> Tensor [len(rows), d]`` (optional; default ``encode(data)[rows]``):
  node tasks on the full graph, the embeddings of the target rows ``rows`` in order; a model
  may compute only what those rows read, with the same values (the full-batch trainer calls it
  with the training items each step and the validation items each epoch).
* ``extends_hidden`` (bool; default False) with ``encode_extended(data, hidden) -> (Tensor [N, d],
  Tensor [S, d])``: ``encode(data)`` plus the outputs of synthetic nodes a remedy inserts before
  the output layer (:class:`~hgimb.imbalance.base.HiddenGraph` in, ``HiddenNodes`` out; GraphSMOTE).
  The reference-style ``gcn``, ``sage`` and ``gatconv`` (output layer a convolution), ``rgcn``,
  ``gat`` and ``simple-hgn`` (before their last layer) declare it.

A model without these declarations trains full-batch; a feature that needs one it lacks stops
with a one-line :class:`~hgimb.errors.HgimbError`. :class:`GraphModel` is the base class of the
built-in models: it makes ``head`` an ``nn.Linear(out_dim, num_classes)``, supports neighbour
sampling and leaves ``num_hops`` to the subclass. Models whose learning is one ``fit`` call (no
gradient steps) follow :mod:`hgimb.engine.fitted` instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HgimbError
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
    """Base class of the built-in models (the contract: the module docstring). Subclasses
    implement ``encode`` and declare ``num_hops`` (node tasks), or set
    ``supports_neighbor_sampling = False`` with a ``no_sampling_reason``."""

    supports_neighbor_sampling: bool = True
    no_sampling_reason: str = ""
    extends_hidden: bool = False  # encode_extended: synthetic nodes before the output layer
    num_hops: Optional[int] = None  # message-passing hops (node tasks); a subclass sets it

    def __init__(self, out_dim: int, num_classes: int):
        super().__init__()
        self.out_dim = out_dim
        self.head = nn.Linear(out_dim, num_classes)

    def encode(self, inputs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, inputs) -> torch.Tensor:
        return self.head(self.encode(inputs))

    def encode_rows(self, inputs, rows: torch.Tensor) -> torch.Tensor:
        """``encode(inputs)[rows]`` (node tasks on the full graph: ``rows`` index the target
        items, in order, repeats allowed). A model whose layers can skip what those rows do not
        read overrides it with the same values (Simple-HGN does)."""
        return self.encode(inputs)[rows]

    def classifier_head(self) -> Optional[nn.Linear]:
        return self.head if isinstance(self.head, nn.Linear) else None

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


# ---------------------------------------------------------------------------- reading the contract
def _name(model) -> str:
    return type(model).__name__


def check_trainable(model) -> None:
    """Raise unless ``model`` has the ``encode`` / ``head`` split the gradient trainer needs."""
    missing = [name for name in ("encode", "head") if not callable(getattr(model, name, None))]
    if missing:
        raise HgimbError(f"model {_name(model)} has no {' and no '.join(missing)}: the trainer needs encode(inputs) -> "
                         "embeddings and head(embeddings) -> logits (see hgimb.models.base)")


def check_neighbor_sampling(model) -> None:
    """Raise the model's one-line reason unless it declares it can train on sampled subgraphs."""
    if not getattr(model, "supports_neighbor_sampling", False):
        reason = getattr(model, "no_sampling_reason", "")
        raise HgimbError(reason or f"model {_name(model)} does not declare supports_neighbor_sampling = True "
                                   "(and num_hops), so it cannot train on neighbour-sampled mini-batches; drop --batch-size")


def declared_hops(model) -> int:
    """The model's ``num_hops``: the hops of neighbours the sampler must cover."""
    hops = getattr(model, "num_hops", None)
    if hops is None or int(hops) < 0:
        raise HgimbError(f"model {_name(model)} supports neighbour sampling but declares no num_hops (message-passing "
                         "hops, >= 0); set it, or drop --batch-size")
    return int(hops)


def classifier_head(model) -> Optional[nn.Linear]:
    """The model's final linear layer (its ``classifier_head()``; default: ``head`` if linear)."""
    declared = getattr(model, "classifier_head", None)
    if callable(declared):
        return declared()
    head = getattr(model, "head", None)
    return head if isinstance(head, nn.Linear) else None


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


def single_target_type(model_name: str, target_types) -> str:
    """The one target type of a model whose ``encode_extended`` makes synthetic nodes of it; a
    one-line error for a task that classifies several."""
    if len(target_types) != 1:
        raise HgimbError(f"{model_name} inserts synthetic nodes of one target type; this task classifies "
                         f"{', '.join(target_types)}")
    return target_types[0]


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
