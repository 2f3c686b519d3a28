"""Building blocks of input-level graph augmentation (the remedies' ``augment`` hook).

:func:`append_nodes` returns a :class:`~hgimb.imbalance.base.GraphAugmentation`: a new
``HeteroData`` that shares every untouched tensor with the task's graph (so models' caches of
derived arrays, keyed by tensor identity, stay valid for the relations that did not change), with
synthetic nodes appended to one node type and edges appended to any relations, and the rows the
model's ``encode`` output gives the real items and the synthetic ones.

:func:`reverse_relation` finds the relation that stores another's edges the other way (ACM's
paper-cite-paper / paper-ref-paper, author-to_paper-paper / paper-to_author-author), so a remedy that
adds edges to one direction adds them to the other too.

:func:`target_relations` lists the relations along which a synthetic node of a target type copies
or samples neighbours: every relation with that type at either end (heterogeneous graphs: a
synthetic paper of ACM gets authors, subjects, terms and cited papers, each along its own relation).
"""
from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch_geometric.utils import coalesce, is_undirected

from ..errors import HgimbError
from .base import GraphAugmentation

EdgeType = Tuple[str, str, str]


def target_relations(data, node_type: str) -> List[EdgeType]:
    """Relations with ``node_type`` at either end, in the graph's order."""
    return [rel for rel in data.edge_types if node_type in (rel[0], rel[2])]


def node_features(data, node_type: str, remedy: str) -> torch.Tensor:
    """The input features of ``node_type``; a one-line error when it has none (featureless types
    are learned embedding tables inside the model, sized to the real nodes)."""
    x = getattr(data[node_type], "x", None)
    if x is None:
        raise HgimbError(f"remedy '{remedy}' synthesises nodes of type '{node_type}' from their input features, "
                         f"and '{node_type}' has none (its nodes are learned embeddings); use an embedding-space "
                         "remedy (graphens, smote, mixup) on this graph")
    return x


def append_nodes(data, target_types: Sequence[str], node_type: str, x_new: Optional[torch.Tensor],
                 edges: Dict[EdgeType, torch.Tensor], new_targets: Optional[torch.Tensor] = None
                 ) -> GraphAugmentation:
    """``data`` with ``k = len(x_new)`` nodes appended to ``node_type`` (features ``x_new``; a
    featureless type takes ``x_new=None`` only when ``k = 0``) and ``edges[rel]`` (``[2, E]``,
    local indices; new nodes are ``n + 0 .. n + k - 1`` of their type) appended to each relation.

    ``new_targets``: labels of the first ``len(new_targets)`` appended nodes when ``node_type`` is
    a target type (the labelled synthetic nodes); the rest (virtual nodes) carry no label.
    """
    n = int(data[node_type].num_nodes)
    k = 0 if x_new is None else int(x_new.size(0))
    out = copy.copy(data)  # new stores, the same tensors
    if k:
        x = getattr(data[node_type], "x", None)
        if x is None:
            raise HgimbError(f"cannot append nodes to '{node_type}': it has no input features")
        out[node_type].x = torch.cat([x, x_new.to(x.device, x.dtype)])
        out[node_type].num_nodes = n + k
    for rel, index in edges.items():
        if rel not in data.edge_types:
            raise HgimbError(f"graph has no relation {rel}")
        if index.numel() == 0:
            continue
        src_n = int(out[rel[0]].num_nodes)
        dst_n = int(out[rel[2]].num_nodes)
        if int(index[0].max()) >= src_n or int(index[1].max()) >= dst_n or int(index.min()) < 0:
            raise HgimbError(f"edges appended to {rel} index outside its node types")
        old = data[rel].edge_index
        out[rel].edge_index = torch.cat([old, index.to(old.device, old.dtype)], dim=1)
        for key in ("edge_weight", "edge_attr"):  # appended edges have no attribute to copy
            if getattr(data[rel], key, None) is not None:
                raise HgimbError(f"cannot append edges to {rel}: it carries '{key}'")
    labelled = 0 if new_targets is None else int(new_targets.numel())
    device = data[node_type].x.device if getattr(data[node_type], "x", None) is not None else torch.device("cpu")
    if labelled and node_type not in target_types:
        raise HgimbError(f"labelled synthetic nodes must be of a target type {list(target_types)}, not '{node_type}'")
    real_rows = None
    new_rows = torch.empty(0, dtype=torch.long, device=device)
    if node_type in target_types and k:
        sizes = [int(data[t].num_nodes) for t in target_types]
        j = list(target_types).index(node_type)
        start = sum(sizes[:j]) + n  # encode rows of the appended nodes begin here
        new_rows = torch.arange(start, start + labelled, device=device)
        if j < len(target_types) - 1:  # items of later target types move down by k rows
            real_rows = torch.arange(sum(sizes), device=device)
            real_rows[start:] += k
    targets = torch.empty(0, dtype=torch.long, device=device) if new_targets is None else new_targets
    return GraphAugmentation(data=out, new_rows=new_rows, new_targets=targets, real_rows=real_rows)


def reverse_relation(data, rel: EdgeType) -> Optional[EdgeType]:
    """The relation storing ``rel``'s edges the other way: ``rel`` itself when its two ends are one
    type and its edges are symmetric, else the first ``(dst, *, src)`` relation with exactly the
    reversed edge set; None when the graph has none."""
    src, _, dst = rel
    ei = data[rel].edge_index
    size = max(int(data[src].num_nodes), int(data[dst].num_nodes))
    if src == dst and is_undirected(ei, num_nodes=size):
        return rel
    flipped = coalesce(ei.flip(0), num_nodes=size)
    for other in data.edge_types:
        if other == rel or other[0] != dst or other[2] != src:
            continue
        oi = data[other].edge_index
        if oi.size(1) >= flipped.size(1) and torch.equal(coalesce(oi, num_nodes=size), flipped):
            return other
    return None
