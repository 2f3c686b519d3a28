"""Multi-head attention products on a fixed graph (GAT, Simple-HGN): :class:`HeadCSR` and
:func:`head_spmm` (``out[i, k] = sum_e alpha[e, k] x[src(e), k]`` on node-major features, with
the ``embedding_bag`` kernel of :mod:`hgimb.models.sparse.csr`, a cached transpose and a sampled
product for ``dalpha``; no ``[E, heads, F]`` message tensor is ever built)."""
from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch_geometric.index import index2ptr

class HeadCSR:
    """A fixed graph prepared for multi-head attention products (GAT, Simple-HGN).

    Edges are given sorted by destination (``dst`` non-decreasing); row ``e`` of an attention
    tensor ``alpha`` (``[E, heads]``) belongs to edge ``e``. Features are node-major
    (``[N, heads, F]``, viewed as ``[N * heads, F]`` without a copy), so the product
    ``out[i, k] = sum_{e: dst(e)=i} alpha[e, k] * x[src(e), k]`` is one
    ``F.embedding_bag(mode="sum", per_sample_weights=...)`` over bags ``(i, k)``; its
    transpose (bags ``(j, k)`` over the out-edges of source ``j``) gives ``dx`` and a sampled
    dense-dense product on the same pattern gives ``dalpha``. Index arrays are built once per
    (graph, heads); per product only ``alpha`` is permuted into bag order (a gather).
    """

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, num_src: int, num_dst: int, heads: int):
        src, dst = src.long(), dst.long()
        if dst.numel() > 1 and bool((dst[1:] < dst[:-1]).any()):
            raise ValueError("HeadCSR: edges must be sorted by destination")
        self.num_src, self.num_dst, self.heads = int(num_src), int(num_dst), int(heads)
        self.num_edges = int(src.numel())
        self.fwd_offsets, self.fwd_indices, self.fwd_alpha, self.alpha_pos = self._bags(dst, src, self.num_dst, None)
        t_perm = torch.argsort(src, stable=True)
        self.bwd_offsets, self.bwd_indices, self.bwd_alpha, _ = self._bags(src[t_perm], dst[t_perm], self.num_src, t_perm)
        # int32 index arrays where they fit: half the memory (ACM: 4.5M entries per array at 8
        # heads), and embedding_bag / index_select / sparse CSR all take them
        if max(self.num_edges, self.num_src, self.num_dst, 1) * self.heads < 2**31 - 1:
            for name in ("fwd_offsets", "fwd_indices", "fwd_alpha", "alpha_pos", "bwd_offsets", "bwd_indices", "bwd_alpha"):
                setattr(self, name, getattr(self, name).to(torch.int32))

    def _bags(self, key: torch.Tensor, other: torch.Tensor, num_rows: int, perm: Optional[torch.Tensor]):
        """Bags ``(row, head)`` over edges sorted by ``key``: offsets, indices ``other * H + k``
        (rows of the node-major table), the position in ``alpha.reshape(-1)`` of each entry, and
        for each alpha position its entry (the inverse permutation)."""
        heads, device = self.heads, key.device
        ptr = index2ptr(key, num_rows)  # key is sorted
        deg = ptr.diff()
        k = torch.arange(heads, device=device)
        local = torch.arange(key.numel(), device=device) - ptr[key]  # rank of an edge in its bag
        # entry of (edge q in key order, head k): bag (key, k) starts at ptr[key] * H + k * deg[key]
        pos = (ptr[key] * heads).unsqueeze(1) + k * deg[key].unsqueeze(1) + local.unsqueeze(1)  # [E, H]
        edge = torch.arange(key.numel(), device=device) if perm is None else perm
        alpha_index = torch.empty(key.numel() * heads, dtype=torch.long, device=device)
        alpha_index[pos.reshape(-1)] = (edge.unsqueeze(1) * heads + k).reshape(-1)
        indices = torch.empty_like(alpha_index)
        indices[pos.reshape(-1)] = (other.unsqueeze(1) * heads + k).reshape(-1)
        offsets = (ptr[:-1] * heads).unsqueeze(1) + k * deg.unsqueeze(1)
        offsets = torch.cat([offsets.reshape(-1), ptr[-1:] * heads])
        inverse = None
        if perm is None:  # alpha position -> entry, for the gradient of alpha
            inverse = torch.empty_like(alpha_index)
            inverse[alpha_index] = torch.arange(alpha_index.numel(), device=device)
        return offsets, indices, alpha_index, inverse


def _bag_product(indices, table, offsets, weights):
    return F.embedding_bag(indices, table, offsets, mode="sum", per_sample_weights=weights, include_last_offset=True)


class _HeadSpMM(torch.autograd.Function):
    """``base + A(alpha) @ x`` on a :class:`HeadCSR`; returns the ``[num_dst * heads, F]``
    buffer (the caller views it, so that the output is not a view made inside a Function)."""

    @staticmethod
    def forward(ctx, alpha, x, base, graph):
        n_src, heads, width = x.shape
        table = x.view(n_src * heads, width)
        # index_select: 2-3x faster than advanced indexing for these gathers on CPU
        weights = alpha.reshape(-1).index_select(0, graph.fwd_alpha)
        out = _bag_product(graph.fwd_indices, table, graph.fwd_offsets, weights)
        if base is not None:
            out.view(graph.num_dst, heads, width).add_(base)
        ctx.save_for_backward(alpha, x)
        ctx.graph = graph
        ctx.base_shape = None if base is None else base.shape
        return out

    @staticmethod
    def backward(ctx, grad_out):
        alpha, x = ctx.saved_tensors
        graph = ctx.graph
        n_src, heads, width = x.shape
        grad = grad_out.contiguous()
        d_alpha = d_x = d_base = None
        if ctx.needs_input_grad[1]:
            weights = alpha.reshape(-1).index_select(0, graph.bwd_alpha)
            d_x = _bag_product(graph.bwd_indices, grad, graph.bwd_offsets, weights).view(n_src, heads, width)
        if ctx.needs_input_grad[0]:
            dots = _sampled_rows_dot(graph, grad, x.view(n_src * heads, width))
            d_alpha = dots.index_select(0, graph.alpha_pos).view(-1, heads)
        if ctx.needs_input_grad[2]:
            d_base = grad.view(graph.num_dst, heads, width).sum_to_size(ctx.base_shape)
        return d_alpha, d_x, d_base, None


def _sampled_rows_dot(graph: HeadCSR, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Per bag entry ``(row r, index c)``: ``left[r] . right[c]`` (entries in bag order)."""
    size = (left.size(0), right.size(0))
    zeros = torch.zeros(graph.fwd_indices.numel(), dtype=left.dtype, device=left.device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(graph.fwd_offsets, graph.fwd_indices, zeros, size)
        return torch.sparse.sampled_addmm(pattern, left, right.t(), beta=0.0).values()


def _broadcasts_to(shape, target) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == torch.Size(target)
    except RuntimeError:
        return False


HALF = (torch.float16, torch.bfloat16)


def head_spmm(alpha: torch.Tensor, x: torch.Tensor, graph: HeadCSR, base: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out[i, k] = base[i, k] + sum_{e: dst(e)=i} alpha[e, k] * x[src(e), k]``.

    ``alpha``: ``[E, heads]`` in ``graph``'s edge order; ``x``: ``[num_src, heads, F]``;
    ``base`` (optional): broadcastable to ``[num_dst, heads, F]``, added in the output buffer.
    Returns ``[num_dst, heads, F]``, differentiable in ``alpha``, ``x`` and ``base``.
    """
    if alpha.shape != (graph.num_edges, graph.heads):
        raise ValueError(f"head_spmm: alpha has shape {tuple(alpha.shape)}, expected {(graph.num_edges, graph.heads)}")
    if x.dim() != 3 or x.shape[:2] != (graph.num_src, graph.heads):
        raise ValueError(f"head_spmm: x has shape {tuple(x.shape)}, expected ({graph.num_src}, {graph.heads}, F)")
    shape = (graph.num_dst, graph.heads, x.size(2))
    if base is not None and not _broadcasts_to(base.shape, shape):
        raise ValueError(f"head_spmm: base has shape {tuple(base.shape)}, which does not broadcast to {shape}")
    if x.dtype in HALF or alpha.dtype in HALF:
        # --amp: the kernels run in float32 (CPU's sampled_addmm has no bfloat16 kernel); the
        # result returns in x's dtype
        with torch.autocast(x.device.type, enabled=False):
            out = _HeadSpMM.apply(alpha.float().contiguous(), x.float().contiguous(),
                                  None if base is None else base.float(), graph)
        return out.view(shape).to(x.dtype)
    if x.dtype != alpha.dtype:
        alpha = alpha.to(x.dtype)
    out = _HeadSpMM.apply(alpha.contiguous(), x.contiguous(), base, graph)
    return out.view(shape)
