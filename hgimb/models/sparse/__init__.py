"""Hand-written kernels for message passing over a fixed graph.

Why hand-written: without ``torch-sparse`` / ``pyg-lib``, PyG's ``RGCNConv`` loops over masked
edge sets, ``torch.sparse.mm`` on CSR transposes the matrix in every backward, and even its
forward zero-fills and copies the output. The graph does not change between epochs, so we
build the adjacency ``A`` (``[num_dst, num_src]``) *and* its transpose once as CSR arrays,
cache both, and use an autograd Function whose backward is one more CSR product:
``dX = A^T @ dY``. The product itself is ``F.embedding_bag(mode="sum",
per_sample_weights=values)`` over the CSR arrays — exactly a CSR x dense product, a tuned
kernel on CPU and CUDA, deterministic (no atomics). No gradient flows to the adjacency values
(fixed normalisation constants).

Modules (import from them directly; this package re-exports nothing):

- :mod:`~hgimb.models.sparse.csr` — :func:`~hgimb.models.sparse.csr.edge_norm` (per-edge mean
  ``1/deg_in`` as RGCN, or symmetric ``1/sqrt(deg_dst deg_src)`` as GCN, optional edge weights),
  :class:`~hgimb.models.sparse.csr.FixedAdjacency` (a constant sparse matrix with its transpose;
  ``adj @ x`` = :func:`~hgimb.models.sparse.csr.spmm` and
  :func:`~hgimb.models.sparse.csr.spmm_add` (``base + A @ x``) differentiate with respect to
  the dense inputs only).
- :mod:`~hgimb.models.sparse.cache` — :class:`~hgimb.models.sparse.cache.GraphCache`, a small
  cache keyed by the identity of graph tensors (``edge_index`` objects): built once per graph,
  rebuilt when a new graph (a sampled subgraph, or the data moved to another device) comes in,
  never reused for a different tensor that happens to share an address.
- :mod:`~hgimb.models.sparse.dense` — :func:`~hgimb.models.sparse.dense.dropout` (``F.dropout``
  with a much cheaper CPU mask), :func:`~hgimb.models.sparse.dense.narrow_mm` (``x @ m`` for a
  few columns, with a faster gradient for ``m``) and
  :func:`~hgimb.models.sparse.dense.first_rows` (``x[:n]`` without the backward copy of a
  whole-tensor slice).
- :mod:`~hgimb.models.sparse.attention` — :class:`~hgimb.models.sparse.attention.HeadCSR` /
  :func:`~hgimb.models.sparse.attention.head_spmm`, multi-head attention products
  (``out[i, k] = sum_e alpha[e, k] x[src(e), k]``) for GAT-style layers, on node-major features
  with the same ``embedding_bag`` kernel, a cached transpose and a sampled product for
  ``dalpha``; no ``[E, heads, F]`` message tensor is ever built.
"""
