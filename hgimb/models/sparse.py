"""Fast sparse x dense products for message passing over a fixed graph.

Why hand-written: without ``torch-sparse`` / ``pyg-lib``, PyG's ``RGCNConv`` loops over masked
edge sets, ``torch.sparse.mm`` on CSR transposes the matrix in every backward, and even its
forward zero-fills and copies the output. The graph does not change between epochs, so we
build the adjacency ``A`` (``[num_dst, num_src]``) *and* its transpose once as CSR arrays,
cache both, and use an autograd Function whose backward is one more CSR product:
``dX = A^T @ dY``. The product itself is ``F.embedding_bag(mode="sum",
per_sample_weights=values)`` over the CSR arrays — exactly a CSR x dense product, a tuned
kernel on CPU and CUDA, deterministic (no atomics). No gradient flows to the adjacency values
(fixed normalisation constants).

Pieces:
- :func:`edge_norm` — per-edge values for mean (``1/deg_in``, as RGCN) or symmetric
  (``1/sqrt(deg_dst deg_src)``, as GCN) normalisation, optional edge weights.
- :class:`FixedAdjacency` — a constant sparse matrix with its transpose; ``adj @ x``
  (:func:`spmm`) and :func:`spmm_add` (``base + A @ x``) differentiate with respect to the
  dense inputs only.
- :class:`GraphCache` — a small cache keyed by the identity of graph tensors (``edge_index``
  objects): built once per graph, rebuilt when a new graph (a sampled subgraph, or the data
  moved to another device) comes in, never reused for a different tensor that happens to
  share an address.
- :func:`dropout` — ``F.dropout`` with a much cheaper CPU mask.
- :class:`HeadCSR` / :func:`head_spmm` — multi-head attention products
  (``out[i, k] = sum_e alpha[e, k] x[src(e), k]``) for GAT-style layers, on node-major features
  with the same ``embedding_bag`` kernel, a cached transpose and a sampled product for
  ``dalpha``; no ``[E, heads, F]`` message tensor is ever built.
- :func:`narrow_mm` — ``x @ m`` for a few columns, with a faster gradient for ``m``;
  :func:`first_rows` — ``x[:n]`` without the backward copy of a whole-tensor slice.
"""
from __future__ import annotations

import warnings
import weakref
from collections import OrderedDict
from typing import Callable, Hashable, Optional, Sequence

import torch
import torch.nn.functional as F

NORMS = ("mean", "sym", "none")


def edge_norm(
    edge_index: torch.Tensor,
    num_src: int,
    num_dst: int,
    edge_weight: Optional[torch.Tensor] = None,
    norm: str = "mean",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Value of each edge ``src -> dst`` (``edge_index[0]`` = source, ``[1]`` = target).

    ``mean``: ``w_e / sum of w over the in-edges of dst`` (``1/deg_in(dst)`` without weights —
    a mean over neighbours, RGCN's ``1/c_{i,r}``); ``sym``: ``w_e / sqrt(deg_in(dst) *
    deg_out(src))``; ``none``: ``w_e``.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown normalisation '{norm}'; valid: {', '.join(NORMS)}")
    src, dst = edge_index[0], edge_index[1]
    if edge_weight is None:
        weight = torch.ones(src.numel(), dtype=dtype, device=src.device)
    else:
        weight = edge_weight.to(dtype).reshape(-1)
    if norm == "none":
        return weight
    deg_in = torch.zeros(num_dst, dtype=dtype, device=src.device).index_add_(0, dst, weight)
    if norm == "mean":
        inv = torch.where(deg_in > 0, 1.0 / deg_in, torch.zeros_like(deg_in))
        return weight * inv[dst]
    deg_out = torch.zeros(num_src, dtype=dtype, device=src.device).index_add_(0, src, weight)
    inv_in = torch.where(deg_in > 0, deg_in.rsqrt(), torch.zeros_like(deg_in))
    inv_out = torch.where(deg_out > 0, deg_out.rsqrt(), torch.zeros_like(deg_out))
    return weight * inv_in[dst] * inv_out[src]


class CSR:
    """Compressed sparse rows of a ``[rows, cols]`` matrix: ``indptr`` (``rows + 1``),
    ``indices`` (column of each entry, sorted by row) and ``values``. Duplicate entries are
    kept (products sum them)."""

    __slots__ = ("shape", "indptr", "indices", "values")

    def __init__(self, row: torch.Tensor, col: torch.Tensor, value: torch.Tensor, shape):
        n_rows, n_cols = int(shape[0]), int(shape[1])
        self.shape = (n_rows, n_cols)
        row, col = row.long(), col.long()
        order = torch.argsort(row * n_cols + col, stable=True)  # by row, then column (locality)
        self.indices = col[order]
        self.values = value[order]
        self.indptr = torch.zeros(n_rows + 1, dtype=torch.long, device=row.device)
        torch.cumsum(torch.bincount(row, minlength=n_rows), 0, out=self.indptr[1:])

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        """``self @ x`` for a dense ``x`` (``[cols, d]``), no autograd."""
        values = self.values if self.values.dtype == x.dtype else self.values.to(x.dtype)
        # embedding_bag(sum, per_sample_weights) is exactly a CSR x dense product, and on CPU it
        # is 3-5x faster than torch's sparse CSR matmul (which zero-fills and copies its output)
        return F.embedding_bag(self.indices, x, self.indptr, mode="sum", per_sample_weights=values,
                               include_last_offset=True)

    def to_dense(self) -> torch.Tensor:
        rows = torch.repeat_interleave(torch.arange(self.shape[0], device=self.indptr.device), self.indptr.diff())
        dense = torch.zeros(self.shape, dtype=self.values.dtype, device=self.values.device)
        return dense.index_put_((rows, self.indices), self.values, accumulate=True)

    def to(self, device) -> "CSR":
        new = CSR.__new__(CSR)
        new.shape = self.shape
        new.indptr, new.indices, new.values = (t.to(device) for t in (self.indptr, self.indices, self.values))
        return new


class FixedAdjacency:
    """A constant sparse matrix ``A`` (``[rows, cols]``) and ``A^T``, both as :class:`CSR`.

    ``adj @ x`` returns ``A @ x`` and back-propagates to ``x`` through ``A^T`` (precomputed);
    :func:`spmm_add` fuses ``base + A @ x``.
    Build it from COO triplets (``row`` = output index, ``col`` = input index).
    """

    def __init__(self, row: torch.Tensor, col: torch.Tensor, value: torch.Tensor, shape):
        self.shape = (int(shape[0]), int(shape[1]))
        self.matrix = CSR(row, col, value, self.shape)
        self.transpose = CSR(col, row, value, (self.shape[1], self.shape[0]))

    @classmethod
    def from_edge_index(
        cls,
        edge_index: torch.Tensor,
        num_src: int,
        num_dst: int,
        edge_weight: Optional[torch.Tensor] = None,
        norm: str = "mean",
        dtype: torch.dtype = torch.float32,
    ) -> "FixedAdjacency":
        """``[num_dst, num_src]`` adjacency of one relation with :func:`edge_norm` values."""
        value = edge_norm(edge_index, num_src, num_dst, edge_weight, norm, dtype)
        return cls(edge_index[1], edge_index[0], value, (num_dst, num_src))

    @property
    def nnz(self) -> int:
        return int(self.matrix.indices.numel())

    @property
    def device(self) -> torch.device:
        return self.matrix.values.device

    def to_dense(self) -> torch.Tensor:
        return self.matrix.to_dense()

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return spmm(self, x)


class _FixedSpMM(torch.autograd.Function):
    """``A @ x`` for a constant ``A``; the backward is a product with the cached ``A^T``."""

    @staticmethod
    def forward(ctx, x, adj):
        ctx.adj = adj
        return adj.matrix.mm(x)

    @staticmethod
    def backward(ctx, grad_out):
        grad_x = ctx.adj.transpose.mm(grad_out.contiguous()) if ctx.needs_input_grad[0] else None
        return grad_x, None


class _FixedSpAddMM(torch.autograd.Function):
    """``base + A @ x`` (the sum written in place into the fresh product), backward as above."""

    @staticmethod
    def forward(ctx, base, x, adj):
        ctx.adj = adj
        return adj.matrix.mm(x).add_(base)

    @staticmethod
    def backward(ctx, grad_out):
        grad_x = ctx.adj.transpose.mm(grad_out.contiguous()) if ctx.needs_input_grad[1] else None
        return grad_out, grad_x, None


def _check(adj: "FixedAdjacency", x: torch.Tensor) -> None:
    if x.dim() != 2 or x.size(0) != adj.shape[1]:
        raise ValueError(f"spmm: x has shape {tuple(x.shape)}, the adjacency has {adj.shape[1]} columns")


def spmm(adj: FixedAdjacency, x: torch.Tensor) -> torch.Tensor:
    """``A @ x`` (``x``: ``[cols, d]``) with a gradient for ``x`` only."""
    _check(adj, x)
    return _FixedSpMM.apply(x.contiguous(), adj)


def spmm_add(base: torch.Tensor, adj: FixedAdjacency, x: torch.Tensor) -> torch.Tensor:
    """``base + A @ x`` in one output buffer; gradients for ``base`` and ``x``."""
    _check(adj, x)
    if base.shape != (adj.shape[0], x.size(1)):
        raise ValueError(f"spmm_add: base has shape {tuple(base.shape)}, expected {(adj.shape[0], x.size(1))}")
    return _FixedSpAddMM.apply(base, x.contiguous(), adj)


class GraphCache:
    """Cache values derived from graph tensors, keyed by the tensors' identity.

    ``get(tensors, extra, build)`` returns the cached value when every tensor in ``tensors``
    is the very same (live) object as when it was cached and has not been modified in place
    (``_version``); otherwise it calls ``build()``. Holding weak references means a new graph
    can never hit a stale entry through a reused memory address, and at most ``maxsize``
    entries are kept (mini-batches each bring a new graph).

    The cache is not state: copying or pickling a model gives an empty cache.
    """

    def __init__(self, maxsize: int = 4):
        self.maxsize = maxsize
        self._entries: "OrderedDict[Hashable, tuple]" = OrderedDict()

    def get(self, tensors: Sequence[Optional[torch.Tensor]], extra: Hashable, build: Callable):
        key = (tuple(id(t) for t in tensors), extra)
        entry = self._entries.get(key)
        if entry is not None:
            refs, versions, value = entry
            if all(
                (t is None and r is None) or (r is not None and r() is t and t._version == v)
                for t, r, v in zip(tensors, refs, versions)
            ):
                self._entries.move_to_end(key)
                return value
            del self._entries[key]
        value = build()
        refs = tuple(None if t is None else weakref.ref(t) for t in tensors)
        versions = tuple(None if t is None else t._version for t in tensors)
        # drop entries whose graph is gone, then the least recently used beyond maxsize
        for old_key in [k for k, (rs, _, _) in self._entries.items() if any(r is not None and r() is None for r in rs)]:
            del self._entries[old_key]
        self._entries[key] = (refs, versions, value)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __deepcopy__(self, memo):
        return GraphCache(self.maxsize)

    def __getstate__(self):
        return {"maxsize": self.maxsize}

    def __setstate__(self, state):
        self.maxsize = state["maxsize"]
        self._entries = OrderedDict()


class _NarrowMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, m):
        ctx.save_for_backward(x, m)
        return x @ m

    @staticmethod
    def backward(ctx, grad):
        x, m = ctx.saved_tensors
        d_x = grad @ m.t() if ctx.needs_input_grad[0] else None
        d_m = (grad.t() @ x).t() if ctx.needs_input_grad[1] else None
        return d_x, d_m


def narrow_mm(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``x @ m`` for a narrow ``m`` (``[in, k]``, a few columns: attention score vectors).

    Why: autograd forms ``m``'s gradient as ``x^T @ grad``, which MKL runs on a slow path when
    ``grad`` has a few columns (100 ms for 43,854 x 512 x 2 on one core); ``(grad^T @ x)^T`` is
    the same product in ~13 ms.
    """
    return _NarrowMM.apply(x, m)


def first_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x[:rows]``, or ``x`` itself when that is all of it: a whole-tensor slice still records
    a slice in autograd, whose backward zero-fills and copies a full-size gradient."""
    return x if rows == x.size(0) else x[:rows]


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout`` with a faster CPU mask.

    Why: on CPU ``F.dropout`` draws a Bernoulli per element (``bernoulli_``), which costs more
    than a whole RGCN layer on Freebase-size inputs. Here each kept/dropped decision is one
    random byte (eight per 64-bit draw of the global torch generator, so
    ``torch.manual_seed`` still makes it reproducible); ``p`` is rounded to a multiple of
    1/256 and the kept values are scaled by the exact inverse keep rate. CUDA tensors use
    ``F.dropout`` (already fast there).
    """
    if not training or p <= 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    if x.device.type != "cpu":
        return torch.nn.functional.dropout(x, p, True)
    threshold = int(round(p * 256))
    if threshold == 0:
        return x
    if threshold >= 256:
        return x * 0.0
    n = x.numel()
    draws = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    keep = draws.view(torch.uint8)[:n].view(x.shape) >= threshold
    # a float mask with the scale folded in: one vectorised multiply forward and backward
    return x * keep.to(x.dtype).mul_(256.0 / (256 - threshold))


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
        deg = torch.bincount(key, minlength=num_rows)
        ptr = torch.zeros(num_rows + 1, dtype=torch.long, device=device)
        torch.cumsum(deg, 0, out=ptr[1:])
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
    if x.dtype != alpha.dtype:
        alpha = alpha.to(x.dtype)
    out = _HeadSpMM.apply(alpha.contiguous(), x.contiguous(), base, graph)
    return out.view(shape)
