"""A fused forward for PyG ``HeteroConv`` over ``GATConv`` relations (hgimb's ``gat``).

Same parameters (the ``GATConv`` modules themselves), same maths and the same dropout draws as
``HeteroConv.forward``; only the per-relation message passing is done differently. PyG's
``GATConv`` gathers ``x_j`` and materialises ``alpha * x_j`` as ``[E, heads, C]`` tensors (and
their gradients); on CPU those gathers, products and scatters were ~75% of a ``gat`` epoch
(ACM: 255k paper-term edges per direction). Here, per relation:

- edges are sorted by destination once per graph (cached by edge tensor identity), so the
  attention softmax is a segment softmax and the aggregation is one multi-head CSR product
  (:func:`hgimb.models.sparse.attention.head_spmm`: weighted ``embedding_bag`` forward, cached transpose
  and a sampled dense-dense product backward) that never builds per-edge messages;
- only the ``rows`` destination rows a layer needs are computed (the last layer: the targets);
- attention scores are ``x (W^T a)`` products with ``[in, heads]`` matrices, so the
  destination projection ``lin_dst(x_dst)`` (used by ``GATConv`` for its score only) is never
  formed and no ``[N, heads, C]`` product is reduced;
- attention dropout draws its Bernoulli mask in the relation's original edge order, exactly as
  ``F.dropout`` inside ``GATConv`` does, so training runs see the same random masks.

Sums are taken in a different order than PyG's scatter, so outputs match to float rounding
(tests: ``tests/test_fused_gat.py``). Relations this path does not cover (self-loops added
inside the conv, edge features, residual, ``SparseTensor`` adjacency, a missing destination
input) fall back to ``HeteroConv`` itself.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch_geometric.index import index2ptr
from torch_geometric.nn import GATConv, HeteroConv
from torch_geometric.nn.conv.hetero_conv import group
from torch_geometric.utils import softmax

from .sparse.attention import HeadCSR, head_spmm
from .sparse.cache import GraphCache
from .sparse.dense import first_rows, narrow_mm

EdgeType = Tuple[str, str, str]


class RelationGraph:
    """One relation's edges sorted by destination (stable), restricted to the first ``rows``
    destination rows by the caller, with the multi-head product structure."""

    def __init__(self, edge_index: torch.Tensor, num_src: int, rows: int, heads: int):
        src, dst = edge_index[0].long(), edge_index[1].long()
        if dst.numel() > 1 and bool((dst[1:] < dst[:-1]).any()):
            self.perm: Optional[torch.Tensor] = torch.argsort(dst, stable=True)
            src, dst = src[self.perm], dst[self.perm]
        else:
            self.perm = None  # already sorted: no permutation
        if dst.numel() and int(dst[-1]) >= rows:
            raise ValueError(f"RelationGraph: edges into destination rows beyond the {rows} computed")
        self.src, self.dst = src, dst
        self.num_edges, self.rows = int(src.numel()), int(rows)
        self.ptr = index2ptr(dst, self.rows)
        self.product = HeadCSR(src, dst, num_src, self.rows, heads)


def supported(conv) -> bool:
    """Whether :func:`gat_relation` reproduces this conv's forward."""
    if not (isinstance(conv, GATConv) and not conv.add_self_loops and conv.lin_edge is None
            and getattr(conv, "res", None) is None and conv.concat):
        return False
    lins = [conv.lin] if conv.lin is not None else [conv.lin_src, conv.lin_dst]
    return not any(isinstance(lin.weight, torch.nn.parameter.UninitializedParameter) for lin in lins)


def gat_relation(conv: GATConv, x_src: torch.Tensor, x_dst: torch.Tensor, graph: RelationGraph) -> torch.Tensor:
    """``conv``'s output for the first ``graph.rows`` destination rows: ``[rows, heads * C]``
    (``x_src`` is ``x_dst`` for a relation within one node type)."""
    heads, channels = conv.heads, conv.out_channels
    lin_src = conv.lin if conv.lin is not None else conv.lin_src
    lin_dst = conv.lin if conv.lin is not None else conv.lin_dst
    h_src = lin_src(x_src).view(-1, heads, channels)
    rows = graph.rows
    # a . (W x)_head = x . (W_head^T a_head): both attention scores come from [in, heads]
    # matrices, cheaper than reducing [N, heads, C] products (and lin_dst(x_dst) is never formed)
    alpha_src = narrow_mm(x_src, _fold(lin_src.weight, conv.att_src, heads, channels))
    alpha_dst = narrow_mm(first_rows(x_dst, rows), _fold(lin_dst.weight, conv.att_dst, heads, channels))
    alpha = alpha_src.index_select(0, graph.src) + alpha_dst.index_select(0, graph.dst)
    if graph.num_edges:
        alpha = F.leaky_relu(alpha, conv.negative_slope)
        alpha = softmax(alpha, ptr=graph.ptr, num_nodes=rows)
    alpha = _dropout_like_pyg(alpha, conv.dropout, conv.training, graph.perm)
    out = head_spmm(alpha, h_src, graph.product).view(rows, heads * channels)
    return out if conv.bias is None else out + conv.bias


def _fold(weight: torch.Tensor, att: torch.Tensor, heads: int, channels: int) -> torch.Tensor:
    """``[in, heads]``: column ``k`` is ``W_k^T a_k`` (``W``: ``[heads * channels, in]``)."""
    return torch.einsum("hci,hc->ih", weight.view(heads, channels, -1), att.view(heads, channels))


def _dropout_like_pyg(alpha: torch.Tensor, p: float, training: bool, perm: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.dropout`` as ``GATConv`` applies it to the attention in the original edge order:
    the same Bernoulli draws (``bernoulli_(1 - p)`` on an ``[E, heads]`` tensor), scaled by
    ``1 / (1 - p)``, then permuted into the sorted order of ``alpha``."""
    if not training or p == 0.0 or alpha.numel() == 0:
        return alpha
    if p >= 1.0:
        return alpha * torch.zeros((), dtype=alpha.dtype, device=alpha.device)
    if alpha.device.type != "cpu":  # F.dropout's fused kernel (CUDA): its mask, from ones of the same shape
        noise = F.dropout(torch.ones_like(alpha), p, True)
    else:
        noise = torch.empty_like(alpha).bernoulli_(1 - p).div_(1 - p)
    return alpha * (noise if perm is None else noise.index_select(0, perm))


def hetero_gat(hetero: HeteroConv, x_dict: Dict[str, torch.Tensor], edge_index_dict: Dict[EdgeType, torch.Tensor],
               rows: Optional[Dict[str, int]] = None, cache: Optional[GraphCache] = None) -> Dict[str, torch.Tensor]:
    """``hetero(x_dict, edge_index_dict)`` restricted to the first ``rows[t]`` rows of each
    destination type (all rows when ``rows`` is None), computed relation by relation with
    :func:`gat_relation`; relation outputs are combined by ``hetero.aggr`` as ``HeteroConv``
    does. ``cache`` keeps each relation's :class:`RelationGraph` between calls."""
    items = [(et, hetero.convs[et]) for et in hetero.convs.keys() if et in edge_index_dict]
    if not all(supported(conv) and isinstance(edge_index_dict[et], torch.Tensor)
               and et[0] in x_dict and et[2] in x_dict for et, conv in items):
        out = hetero(x_dict, edge_index_dict)
        return out if rows is None else {t: h[: rows[t]] for t, h in out.items() if t in rows}
    outs: Dict[str, list] = {}
    for et, conv in items:
        src, _, dst = et
        edge_index = edge_index_dict[et]
        n_rows = int(x_dict[dst].size(0)) if rows is None or dst not in rows else int(rows[dst])
        key = ("gat-relation", int(x_dict[src].size(0)), n_rows, conv.heads)
        build = lambda: RelationGraph(edge_index, int(x_dict[src].size(0)), n_rows, conv.heads)  # noqa: E731
        graph = build() if cache is None else cache.get([edge_index], key, build)
        outs.setdefault(dst, []).append(gat_relation(conv, x_dict[src], x_dict[dst], graph))
    return {t: group(xs, hetero.aggr) for t, xs in outs.items()}
