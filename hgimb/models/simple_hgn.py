"""Simple-HGN (Lv et al., KDD 2021, "Are we really making much progress?"), the HGB baseline.

A GAT over the whole heterogeneous graph viewed as one homogeneous graph, with three changes:
1. learnable edge-type embeddings enter the attention logits:
   ``e_ij = LeakyReLU(a_l·W h_j + a_r·W h_i + a_e·W_r r_type(ij))``;
2. residual connections on nodes (all layers but the first) and on attention
   (``alpha = (1 - beta) * alpha + beta * alpha_previous_layer``, beta = 0.05);
3. the final embeddings are L2-normalised.
Self-loops are added with their own edge type, as in the HGB code.

Why not PyG's ``GATConv``: it takes edge features, not a per-relation embedding table with the
attention residual, so the layer is written here: PyG's ``softmax`` for the attention and a CSR
aggregation (:func:`attention_aggregate`) that never materialises per-edge messages.

Layout (HGB ``myGAT``): input projection per node type (``HeteroInput``: features projected,
featureless types get learnable embeddings) -> ``layers`` multi-head layers (``heads`` x ``hidden``,
ELU) -> one single-head output layer to ``hidden`` dims with node residual -> L2 normalisation.
The HGB code ends with a ``num_classes``-wide output layer; here the output layer is ``hidden``
wide and the (linear) head of :class:`GraphModel` maps it to classes, so remedies can work on the
normalised embeddings.

Options (``cfg.options``): ``edge_dim`` (64), ``beta`` (0.05), ``negative_slope`` (0.05),
``attn_dropout`` (defaults to ``cfg.dropout``).
"""
from __future__ import annotations

import warnings
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import softmax

from .base import GraphModel, HeteroInput, seed_count
from .registry import register_model

# Published HGB settings (Lv et al. 2021; THUDM/HGB NC/benchmark/methods/baseline/run_new.py
# defaults and README commands). ``layers`` counts the multi-head layers before the output layer
# (HGB's --num-layers). HGB's --feats-type maps to the HGB loader's ``node_features`` dataset
# option (ACM 2 = ``target``: paper features, id embeddings for the other types; Freebase has no
# features, so 3 = ids everywhere is what HeteroInput does anyway); see configs/hgb/.
HGB_DEFAULTS: Dict[str, Dict] = {
    "_all": dict(hidden=64, heads=8, layers=2, dropout=0.5, lr=5e-4, weight_decay=1e-4,
                 edge_dim=64, negative_slope=0.05, beta=0.05, epochs=300, patience=30),
    "acm": dict(layers=2),
    "freebase": dict(layers=2),
    "dblp": dict(layers=3),
    "imdb": dict(layers=2),
}


def hgb_defaults(dataset: str) -> Dict:
    """HGB settings for ``dataset`` (falls back to the shared ones)."""
    key = str(dataset).lower().split(":")[-1].rstrip("/").split("/")[-1].removesuffix(".zip")
    return {**HGB_DEFAULTS["_all"], **HGB_DEFAULTS.get(key, {})}


class AttentionGraph:
    """A fixed homogeneous graph prepared for attention aggregation.

    Edges are sorted by (destination, source) so that per-head attention values can be used as
    the values of a CSR matrix without any reordering; the transposed structure (by source) and
    block-diagonal multi-head structures are built once per head count and cached.
    """

    def __init__(self, edge_index: torch.Tensor, edge_type: torch.Tensor, num_nodes: int):
        n = int(num_nodes)
        src, dst = edge_index[0], edge_index[1]
        perm = torch.argsort(dst * n + src)
        self.num_nodes = n
        self.src, self.dst, self.edge_type = src[perm], dst[perm], edge_type[perm]
        self.num_edges = int(self.src.numel())
        self.ptr = _ptr(self.dst, n)
        self.t_perm = torch.argsort(self.src * n + self.dst)  # sorted edges -> by (source, dest)
        self.t_ptr = _ptr(self.src, n)
        self.t_col = self.dst[self.t_perm]
        self._blocks: Dict[int, Tuple[torch.Tensor, ...]] = {}

    @property
    def edge_index(self) -> torch.Tensor:
        return torch.stack([self.src, self.dst])

    def blocks(self, heads: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """CSR (crow, col) of the block-diagonal ``[heads*N, heads*N]`` matrix (head-major) and
        of its transpose."""
        if heads not in self._blocks:
            n, e = self.num_nodes, self.num_edges
            dev = self.src.device
            shift_rows = torch.arange(heads, device=dev).repeat_interleave(n) * e
            end = torch.tensor([heads * e], device=dev)
            crow = torch.cat([self.ptr[:-1].repeat(heads) + shift_rows, end])
            col = torch.cat([self.src + k * n for k in range(heads)])
            t_crow = torch.cat([self.t_ptr[:-1].repeat(heads) + shift_rows, end])
            t_col = torch.cat([self.t_col + k * n for k in range(heads)])
            self._blocks[heads] = (crow, col, t_crow, t_col)
        return self._blocks[heads]


def _ptr(sorted_index: torch.Tensor, n: int) -> torch.Tensor:
    ptr = torch.zeros(n + 1, dtype=torch.long, device=sorted_index.device)
    ptr[1:] = torch.cumsum(torch.bincount(sorted_index, minlength=n), 0)
    return ptr


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: int) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta" is noise for users
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, (size, size))


class _AttentionSpMM(torch.autograd.Function):
    """``out[i, k] = sum_{e: dst(e)=i} alpha[e, k] * h[src(e), k]`` for all heads ``k`` at once.

    Why hand-written: gathering ``h[src]`` materialises ``[E, heads, F]`` messages (1.1 GB per
    tensor at 8 x 64 on HGB ACM's 560k edges, several of them per layer with autograd: 13 s per
    layer forward + backward on the 2-core dev machine); here the forward is one CSR product of a
    block-diagonal matrix, the backward one product with the cached transpose (``dh``) and one
    sampled dense-dense product (``torch.sparse.sampled_addmm``, ``dalpha``): 1.3 s.
    """

    @staticmethod
    def forward(ctx, alpha, h, graph):
        n, heads, f = h.shape
        crow, col, _, _ = graph.blocks(heads)
        h_blocks = h.transpose(0, 1).reshape(heads * n, f).contiguous()
        values = alpha.t().contiguous().reshape(-1)
        adj = _csr(crow, col, values, heads * n)
        out = torch.sparse.mm(adj, h_blocks)
        ctx.save_for_backward(alpha, h_blocks)
        ctx.graph, ctx.shape = graph, (n, heads, f)
        return out.view(heads, n, f).transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_out):
        alpha, h_blocks = ctx.saved_tensors
        graph, (n, heads, f) = ctx.graph, ctx.shape
        crow, col, t_crow, t_col = graph.blocks(heads)
        grad = grad_out.transpose(0, 1).reshape(heads * n, f).contiguous()
        d_alpha = d_h = None
        if ctx.needs_input_grad[1]:
            t_values = alpha[graph.t_perm].t().contiguous().reshape(-1)
            adj_t = _csr(t_crow, t_col, t_values, heads * n)
            d_h = torch.sparse.mm(adj_t, grad).view(heads, n, f).transpose(0, 1)
        if ctx.needs_input_grad[0]:
            zeros = torch.zeros(col.numel(), dtype=grad.dtype, device=grad.device)
            pattern = _csr(crow, col, zeros, heads * n)
            sampled = torch.sparse.sampled_addmm(pattern, grad, h_blocks.t(), beta=0.0)
            d_alpha = sampled.values().view(heads, -1).t()
        return d_alpha, d_h, None


def attention_aggregate(alpha: torch.Tensor, h: torch.Tensor, graph: AttentionGraph) -> torch.Tensor:
    """Sum of attention-weighted source features per destination: ``[N, heads, F]``."""
    return _AttentionSpMM.apply(alpha, h, graph)


class SimpleHGNConv(nn.Module):
    """One Simple-HGN attention layer on an :class:`AttentionGraph` (homogeneous view).

    ``forward(x, graph, res_attn=None) -> (out [N, heads, out_channels], attn [E, heads])`` with
    edges in ``graph`` order; the returned attention is detached (HGB code) and feeds the next
    layer's attention residual.
    """

    def __init__(self, in_channels: int, out_channels: int, heads: int, num_edge_types: int,
                 edge_dim: int = 64, dropout: float = 0.5, attn_dropout: float = 0.5,
                 negative_slope: float = 0.05, residual: bool = False, activation: bool = True,
                 beta: float = 0.0):
        super().__init__()
        self.heads, self.out_channels, self.edge_dim = heads, out_channels, edge_dim
        self.beta, self.negative_slope, self.activation = beta, negative_slope, activation
        self.lin = nn.Linear(in_channels, heads * out_channels, bias=False)
        self.edge_emb = nn.Embedding(num_edge_types, edge_dim)
        self.lin_edge = nn.Linear(edge_dim, heads * edge_dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_channels))
        self.att_edge = nn.Parameter(torch.empty(1, heads, edge_dim))
        self.feat_drop = nn.Dropout(dropout)
        self.attn_drop = nn.Dropout(attn_dropout)
        if residual:
            # as in the HGB code: identity only when the input width equals the per-head output
            # width (broadcast over heads), else a linear map (so 512 -> 8 x 64 is learned)
            self.res = (nn.Identity() if in_channels == out_channels
                        else nn.Linear(in_channels, heads * out_channels, bias=False))
        else:
            self.res = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        gain = nn.init.calculate_gain("relu")
        for w in (self.lin.weight, self.lin_edge.weight, self.att_src, self.att_dst, self.att_edge):
            nn.init.xavier_normal_(w, gain=gain)
        self.edge_emb.reset_parameters()
        if isinstance(self.res, nn.Linear):
            nn.init.xavier_normal_(self.res.weight, gain=gain)

    def edge_type_scores(self) -> torch.Tensor:
        """Attention logit contribution of each edge type: ``[num_edge_types, heads]``."""
        e = self.lin_edge(self.edge_emb.weight).view(-1, self.heads, self.edge_dim)
        return (e * self.att_edge).sum(-1)

    def attention(self, x: torch.Tensor, graph: AttentionGraph) -> torch.Tensor:
        """Softmax-normalised attention ``[E, heads]`` over each node's incoming edges, from the
        layer input ``x`` (after feature dropout)."""
        # a_src . (W x)_head = x . (W_head^T a_src,head): fold the attention vectors into the
        # weight (an [in, heads] matrix) instead of reducing an [N, heads, F] product
        weight = self.lin.weight.view(self.heads, self.out_channels, -1)
        score_src = x @ torch.einsum("hfi,hf->ih", weight, self.att_src[0])  # [N, H]
        score_dst = x @ torch.einsum("hfi,hf->ih", weight, self.att_dst[0])
        # edge-type scores are computed on the small embedding table, then gathered per edge
        logits = score_src[graph.src] + score_dst[graph.dst] + self.edge_type_scores()[graph.edge_type]
        return softmax(F.leaky_relu(logits, self.negative_slope), ptr=graph.ptr, num_nodes=graph.num_nodes)

    def forward(self, x: torch.Tensor, graph: AttentionGraph,
                res_attn: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        h_in = self.feat_drop(x)
        h = self.lin(h_in).view(-1, self.heads, self.out_channels)
        alpha = self.attn_drop(self.attention(h_in, graph))
        if res_attn is not None and self.beta > 0:
            alpha = alpha * (1.0 - self.beta) + res_attn * self.beta
        out = attention_aggregate(alpha, h, graph)
        if self.res is not None:
            out = out + self.res(h_in).view(h_in.size(0), -1, self.out_channels)
        if self.activation:
            out = F.elu(out)
        return out, alpha.detach()


def homogeneous_view(data, edge_types) -> Tuple[AttentionGraph, Dict[str, int]]:
    """One homogeneous graph from a ``HeteroData``: node ids offset per node type (in
    ``data.node_types`` order), edges typed by their position in ``edge_types``, existing
    self-loops dropped and one self-loop per node added with type ``len(edge_types)`` (HGB code).
    (Built by hand rather than with ``HeteroData.to_homogeneous`` so that no feature matrix is
    copied and node features may exist on some types only.)"""
    offsets, start = {}, 0
    for nt in data.node_types:
        offsets[nt] = start
        start += int(data[nt].num_nodes)
    type_index = {et: i for i, et in enumerate(edge_types)}
    device = data[data.edge_types[0]].edge_index.device if data.edge_types else torch.device("cpu")
    parts, types = [], []
    for et in data.edge_types:
        if et not in type_index:
            continue
        ei = data[et].edge_index
        shift = torch.tensor([[offsets[et[0]]], [offsets[et[2]]]], dtype=ei.dtype, device=device)
        parts.append(ei + shift)
        types.append(torch.full((ei.size(1),), type_index[et], dtype=torch.long, device=device))
    edge_index = torch.cat(parts, 1) if parts else torch.empty(2, 0, dtype=torch.long, device=device)
    edge_type = torch.cat(types) if types else torch.empty(0, dtype=torch.long, device=device)
    keep = edge_index[0] != edge_index[1]
    loops = torch.arange(start, device=device).repeat(2, 1)
    edge_index = torch.cat([edge_index[:, keep], loops], 1)
    edge_type = torch.cat([edge_type[keep], torch.full((start,), len(edge_types), dtype=torch.long, device=device)])
    return AttentionGraph(edge_index, edge_type, start), offsets


class SimpleHGN(GraphModel):
    def __init__(self, task, cfg):
        options = cfg.options or {}
        hidden, heads = int(cfg.hidden), int(cfg.heads)
        super().__init__(hidden, task.num_classes)
        self.target_types = list(task.target_types)
        self.edge_types = list(task.data.edge_types)
        edge_dim = int(options.get("edge_dim", 64))
        beta = float(options.get("beta", 0.05))
        slope = float(options.get("negative_slope", 0.05))
        attn_dropout = float(options.get("attn_dropout", cfg.dropout))
        num_edge_types = len(self.edge_types) + 1  # + self-loop type
        self.input = HeteroInput(task.data, hidden)
        self.convs = nn.ModuleList()
        in_dim = hidden
        for layer in range(max(int(cfg.layers), 1)):
            self.convs.append(SimpleHGNConv(
                in_dim, hidden, heads, num_edge_types, edge_dim, cfg.dropout, attn_dropout, slope,
                residual=layer > 0, activation=True, beta=beta))
            in_dim = hidden * heads
        self.out_conv = SimpleHGNConv(in_dim, hidden, 1, num_edge_types, edge_dim, cfg.dropout,
                                      attn_dropout, slope, residual=True, activation=False, beta=beta)
        self._view_cache = None  # (data, view): the full graph's homogeneous view, built once

    def _view(self, data):
        if self._view_cache is not None and self._view_cache[0] is data:
            return self._view_cache[1]
        view = homogeneous_view(data, self.edge_types)
        if getattr(data[self.target_types[0]], "batch_size", None) is None:  # cache full graphs only
            self._view_cache = (data, view)
        return view

    def encode(self, data) -> torch.Tensor:
        graph, offsets = self._view(data)
        x_dict = self.input(data)
        h = torch.cat([x_dict[nt] for nt in data.node_types], 0)
        res_attn = None
        for conv in self.convs:
            h, res_attn = conv(h, graph, res_attn)
            h = h.flatten(1)
        h, _ = self.out_conv(h, graph, None)  # HGB: no attention residual here
        h = h.mean(1)
        h = F.normalize(h, p=2, dim=-1, eps=1e-12)
        parts = [h[offsets[t]: offsets[t] + seed_count(data, t)] for t in self.target_types]
        return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


@register_model("simple-hgn", kinds=("node",), help="Simple-HGN (Lv et al. KDD 2021): GAT with edge-type attention, residuals, L2 norm")
def build_simple_hgn(task, cfg):
    return SimpleHGN(task, cfg)


__all__ = ["SimpleHGN", "SimpleHGNConv", "AttentionGraph", "attention_aggregate", "HGB_DEFAULTS", "hgb_defaults",
           "homogeneous_view"]
