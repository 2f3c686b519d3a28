"""Homogeneous baselines for one-node-type graphs (Cora, CiteSeer): ``gcn``, ``sage``, ``gatconv``.

The class-imbalanced node classification literature (GraphSMOTE, GraphENS, TAM, GraphSHA, BAT)
uses these backbones. Each layer computes exactly what its PyG counterpart computes
(``GCNConv`` with self-loops and symmetric normalisation; ``SAGEConv`` with mean aggregation and
a root weight; ``GATConv`` with self-loops, LeakyReLU 0.2, no attention dropout;
``tests/test_homogeneous.py`` checks each against PyG), but on cached CSR arrays:

* the graph is turned into a :class:`~hgimb.models.sparse.csr.FixedAdjacency` (GCN, SAGE) or a
  :class:`~hgimb.models.sparse.attention.HeadCSR` (GAT) once per graph, not normalised again
  every call;
* sparse wide input features (Cora's bag of words: 1,433 columns, 1.3% non-zero) enter through
  a CSR product: ``X @ W`` costs ``nnz x width`` instead of ``N x 1,433 x width``, and its weight
  gradient is one more CSR product with the cached transpose. Input dropout (``style: hgimb``)
  drops stored non-zeros only, which is the same operation (a zero stays zero under dropout).
  Features that require a gradient (``graphens-ego`` reads ``dL/dx`` as its saliency) keep the
  CSR product and get the dense ``dL/dx = dL/d(XW) W`` from it, unless input dropout is on in
  training: dense dropout also masks the gradient at the zeros, so those take the dense path.
  On Cora this took a GCN epoch (one training step + one validation pass, one thread) from
  about 0.5 s to milliseconds (BENCHMARKS.md section 3 has the measured numbers).

Three styles (``--model-option style=...``; each of its parts can also be set on its own):

* ``hgimb`` (default): dropout on the input features too, ``layers`` convolutions of width
  ``hidden`` (the last without activation) and a linear head: ``head(encode(x))``.
* ``reference``: the networks of the GraphENS / TAM / GraphSHA code (their ``nets/*.py``): no
  input dropout; ``conv1 -> ReLU -> dropout -> ... -> conv_L`` whose last convolution outputs the
  classes; weight decay on the first layer only (their ``reg_params``; the trainer reads
  :meth:`HomogeneousGNN.no_weight_decay`). The last convolution is split into ``encode`` (its
  aggregation) and ``head`` (its linear map): GCN ``A (h W) + b = (A h) W + b``; SAGE
  ``W_l mean(h_N) + W_r h + b = [mean(h_N), h] [W_l; W_r] + b`` (``encode`` is ``2 x hidden``
  wide); GAT ``sum_j alpha_ij W h_j + b = (sum_j alpha_ij h_j) W + b`` with the attention scores
  ``a . W h`` computed from the head's own weight. So logits equal the reference network's,
  and remedies that work in embedding space (SMOTE, mixup) mix the last layer's aggregated input.
  GAT follows their ``StandGAT2``: ``heads`` heads of ``hidden / heads`` channels, concatenated,
  then a one-head output layer.

* ``graphens``: the network of the GraphENS code's own runs (JoonHyung-Park/GraphENS
  ``nets/gcn.py``, ``main_semi.py``): ``layers`` convolutions of width ``hidden``, each followed
  by ReLU, no dropout between them, dropout before a linear head; weight decay on the
  convolutions, not the head. (Their GCN also normalises by the target's degree: add
  ``norm=target``.)

Options: ``style`` (hgimb | reference | graphens), ``input_dropout`` (bool), ``head`` (linear |
conv), ``weight_decay`` (all | first-layer | all-but-head), ``layout`` (stack | graphens), and
for ``gcn`` ``norm``: ``sym`` (default, PyG's
``GCNConv``: ``1 / sqrt(d_i d_j)`` over ``A + I``) or ``target`` (``1 / d_i`` on every edge into
``i``, self-loop included: a mean over ``N(i) + {i}``). ``target`` is what the GraphENS code's
own ``GCNConv`` computes (its ``gcn_norm`` returns ``deg_inv_sqrt[col] * w * deg_inv_sqrt[col]``)
and so does TAM's ``ens_nets/gcn.py``, the backbone behind the published GraphENS and GraphENS +
TAM numbers; TAM's ``nets/gcn.py`` (CE, re-weight, balanced softmax rows) uses PyG's symmetric
``GCNConv``.

All edge types of the one node type are merged and made undirected (GCN's symmetric
normalisation assumes it) when the task's graph is not stored both ways already; a graph stored
both ways (Planetoid's) is used as given, so edges an input-level remedy appends in one
direction only (``graphens-ego`` with ``ens_edges=in``) keep their direction. Featureless graphs get a learnable embedding per node.

Sampled subgraphs (``--batch-size``): the neighbour sampler follows in-edges, which on a graph
stored with both directions (Planetoid's are) are exactly the undirected neighbours, so the
sampled edges are used as they are; a graph stored one-way is refused in mini-batch mode. SAGE's
mean then equals the full-graph output with fanout -1; GCN normalises by degrees in the subgraph
(as PyG's GCNConv on ``NeighborLoader`` batches).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.index import index2ptr
from torch_geometric.nn.inits import glorot
from torch_geometric.utils import coalesce, cumsum, is_undirected, remove_self_loops, softmax, to_undirected

from ..errors import HgimbError
from ..imbalance.base import HiddenGraph, HiddenRelation
from .base import SPARSE_INPUT_MAX_DENSITY, SPARSE_INPUT_MIN_COLUMNS, GraphModel, seed_count
from ..params import Param
from .registry import register_model
from .sparse.attention import HeadCSR, head_spmm
from .sparse.cache import GraphCache
from .sparse.csr import FixedAdjacency, spmm, spmm_add
from .sparse.dense import dropout, first_rows

GCN_NORMS = ("sym", "target")  # gcn's edge normalisation (see the module docstring)
LAYOUTS = ("stack", "graphens")
DECAY_SCOPES = ("all", "first-layer", "all-but-head")
HOMOGENEOUS_RELATION = "edges"  # the one relation of encode_extended's HiddenGraph
STYLES: Dict[str, Dict[str, object]] = {
    "hgimb": {"input_dropout": True, "head": "linear", "weight_decay": "all", "layout": "stack"},
    "reference": {"input_dropout": False, "head": "conv", "weight_decay": "first-layer", "layout": "stack"},
    "graphens": {"input_dropout": False, "head": "linear", "weight_decay": "all-but-head", "layout": "graphens"},
}
PARAMS = (  # --model-option parameters of gcn, sage and gatconv; none = the style's value
    Param("style", str, "hgimb", "preset of the four options below", choices=tuple(STYLES)),
    Param("input_dropout", bool, None, "dropout on the input features (style default)", none=True),
    Param("head", str, None, "linear head after the convs, or the last conv as the head (style default)",
          choices=("linear", "conv"), none=True),
    Param("weight_decay", str, None, "weight decay on all parameters, the first layer only, or all but the head "
          "(style default)", choices=DECAY_SCOPES, none=True),
    Param("layout", str, None, "stack: dropout before every conv but the first, no ReLU after the last; "
          "graphens: ReLU after every conv, dropout only before the linear head (style default)",
          choices=LAYOUTS, none=True),
    Param("norm", str, None, "gcn only: sym (PyG GCNConv, default) or target (1/deg of the target node, "
          "the GraphENS code's GCN)", choices=GCN_NORMS, none=True),
)


def _check_one_type(task, name: str) -> str:
    node_types = list(task.data.node_types)
    if len(node_types) != 1:
        raise HgimbError(
            f"model '{name}' needs a graph with one node type, but '{task.name}' has "
            f"{len(node_types)} ({', '.join(node_types)}); use rgcn/gat/simple-hgn for heterogeneous graphs"
        )
    return node_types[0]


def _options(options: Dict[str, object]) -> Dict[str, object]:
    """The style's settings with the options set explicitly (validated against PARAMS) on top."""
    out = dict(STYLES[options["style"]])
    out.update({key: value for key, value in options.items() if key in out and value is not None})
    return out


# ------------------------------------------------------------------------------ sparse input
class SparseFeatures:
    """A constant feature matrix ``X`` (``[N, D]``) in CSR form plus its transpose, for
    ``X @ W`` with an optional mask on the stored values (input dropout)."""

    def __init__(self, x: torch.Tensor):
        row, col = x.nonzero(as_tuple=True)  # row-major: already sorted by row, then column
        self.shape = tuple(x.shape)
        self.values = x[row, col]
        self.indices = col
        self.indptr = index2ptr(row, x.size(0))
        self.t_perm = torch.argsort(col, stable=True)  # entries in column order
        self.t_indices = row[self.t_perm]
        # col is unsorted: counting beats gathering col[t_perm] for index2ptr (see sparse/csr.py)
        self.t_indptr = cumsum(torch.bincount(col, minlength=x.size(1)))

    @staticmethod
    def of(x: torch.Tensor) -> Optional["SparseFeatures"]:
        """``x`` as CSR when it is wide and sparse enough to gain from it (the thresholds of
        :class:`~hgimb.models.base.HeteroInput`), else None."""
        if x.dim() != 2 or x.size(1) < SPARSE_INPUT_MIN_COLUMNS or x.numel() == 0 or not x.is_floating_point():
            return None
        if int(torch.count_nonzero(x)) > SPARSE_INPUT_MAX_DENSITY * x.numel():
            return None
        return SparseFeatures(x)

    def matmul(self, weight_t: torch.Tensor, values: Optional[torch.Tensor] = None,
               x: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``X @ weight_t`` (``weight_t``: ``[D, out]``), ``X``'s stored values replaced by ``values``.
        ``x``: the dense features this CSR form was built from, when they require a gradient (it
        is ``dL/d(XW) @ weight_t^T``, computed only then)."""
        # a contiguous table: embedding_bag on the transposed view of a weight was ~5x slower
        return _SparseInputProduct.apply(weight_t.contiguous(), self.values if values is None else values, self, x)


class _SparseInputProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight_t, values, feats, x=None):
        ctx.feats = feats
        ctx.save_for_backward(values, weight_t)
        values = values.to(weight_t.dtype)
        return F.embedding_bag(feats.indices, weight_t, feats.indptr, mode="sum", per_sample_weights=values,
                               include_last_offset=True)

    @staticmethod
    def backward(ctx, grad):
        values, weight_t = ctx.saved_tensors
        f = ctx.feats
        d_weight = d_x = None
        if ctx.needs_input_grad[0]:
            weights = values.index_select(0, f.t_perm).to(grad.dtype)
            d_weight = F.embedding_bag(f.t_indices, grad.contiguous(), f.t_indptr, mode="sum",
                                       per_sample_weights=weights, include_last_offset=True)
        if ctx.needs_input_grad[3]:
            # rows outside the loss's receptive field have a zero gradient: on Cora (reference GCN,
            # step 10) about half of the rows remain, and the product shrinks with them
            rows = grad.abs().sum(1).nonzero().flatten()
            d_x = grad.new_zeros(grad.size(0), weight_t.size(0))
            d_x[rows] = grad[rows] @ weight_t.t().to(grad.dtype)
        return d_weight, None, None, d_x


# ------------------------------------------------------------------------------ the model
class HomogeneousGNN(GraphModel):
    def __init__(self, task, cfg, conv: str):
        node_type = _check_one_type(task, conv)
        opts = _options(cfg.options)
        hidden, layers = int(cfg.hidden), max(int(cfg.layers), 1)
        heads = int(cfg.heads) if conv == "gatconv" else 1
        if conv == "gatconv" and hidden % heads:
            raise HgimbError(f"model 'gatconv': --hidden {hidden} must be a multiple of --heads {heads} "
                             "(heads x hidden/heads channels, concatenated)")
        if opts["head"] == "conv" and layers < 2:
            raise HgimbError(f"model '{conv}': head=conv (style=reference) needs --layers >= 2, got {layers}")
        if opts["layout"] == "graphens" and opts["head"] != "linear":
            raise HgimbError(f"model '{conv}': layout=graphens ends in a linear head; it cannot be combined with head=conv")
        norm = cfg.options.get("norm")
        if norm is not None and conv != "gcn":
            raise HgimbError(f"model '{conv}': --model-option norm applies to gcn only (sage averages its "
                             "neighbours, gatconv normalises by attention)")
        self.gcn_norm = norm or "sym"
        store = task.data[node_type]
        x = getattr(store, "x", None)
        in_dim = hidden if x is None else int(x.size(-1))
        n_convs = layers if opts["head"] == "linear" else layers - 1  # 'conv': the head is the last conv
        dims = [in_dim] + [hidden] * n_convs
        last_in = dims[-1]
        out_dim = 2 * last_in if (opts["head"] == "conv" and conv == "sage") else last_in
        super().__init__(out_dim, task.num_classes)
        self.conv_kind, self.head_style, self.heads = conv, str(opts["head"]), heads
        self.extends_hidden = self.head_style == "conv"  # encode_extended needs an output convolution
        self.input_dropout, self.decay_scope = bool(opts["input_dropout"]), str(opts["weight_decay"])
        self.layout = str(opts["layout"])
        self.node_type = node_type
        self.num_hops = layers
        self.embed = nn.Embedding(int(store.num_nodes), hidden) if x is None else None
        self.dropout = float(cfg.dropout)
        # one weight per conv: [out, in] (GCN), [2 * out, in] = [W_l; W_r] (SAGE), [out, in] (GAT)
        rows = [2 * b if conv == "sage" else b for b in dims[1:]]
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(r, a)) for r, a in zip(rows, dims[:-1]))
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(b)) for b in dims[1:])
        if conv == "gatconv":
            width = [b // self.heads for b in dims[1:]]
            self.att_src = nn.ParameterList(nn.Parameter(torch.empty(1, self.heads, w)) for w in width)
            self.att_dst = nn.ParameterList(nn.Parameter(torch.empty(1, self.heads, w)) for w in width)
            if self.head_style == "conv":  # the output layer's attention vectors (one head)
                self.out_att_src = nn.Parameter(torch.empty(task.num_classes))
                self.out_att_dst = nn.Parameter(torch.empty(task.num_classes))
        self._graphs = GraphCache(maxsize=4)  # edge tensors -> adjacency / attention graph
        self._inputs = GraphCache(maxsize=4)  # feature tensor -> SparseFeatures (or None)
        stored = [task.data[et].edge_index for et in task.data.edge_types]
        self._stored_undirected = is_undirected(torch.cat(stored, 1), num_nodes=int(store.num_nodes)) if stored else True
        self.reset_parameters()

    # -- parameters ------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """The PyG initialisations: glorot weights and zero bias (GCNConv, GATConv), PyTorch's
        Linear init for SAGE's ``lin_l``/``lin_r`` (fan-in of one of them)."""
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if self.conv_kind == "sage":
                bound = 1.0 / math.sqrt(w.size(1))
                nn.init.uniform_(w, -bound, bound)
                nn.init.uniform_(b, -bound, bound)
            else:
                glorot(w)
                nn.init.zeros_(b)
            if self.conv_kind == "gatconv":
                glorot(self.att_src[i])
                glorot(self.att_dst[i])
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)
        if self.head_style == "linear":
            self.head.reset_parameters()
        elif self.conv_kind == "sage":
            bound = 1.0 / math.sqrt(self.head.in_features // 2)
            nn.init.uniform_(self.head.weight, -bound, bound)
            nn.init.uniform_(self.head.bias, -bound, bound)
        else:
            glorot(self.head.weight)
            nn.init.zeros_(self.head.bias)
            if self.conv_kind == "gatconv":
                glorot(self.out_att_src.view(1, 1, -1))
                glorot(self.out_att_dst.view(1, 1, -1))

    def no_weight_decay(self) -> List[nn.Parameter]:
        """Parameters the optimiser should not decay: with ``weight_decay: first-layer``, all but
        the first layer's (the TAM code's ``non_reg_params``); with ``all-but-head``, the linear
        head's (the GraphENS code's classifier); else none."""
        if self.decay_scope == "all":
            return []
        if self.decay_scope == "all-but-head":
            return list(self.head.parameters())
        first = {id(p) for p in (self.weights[0], self.biases[0])} if len(self.weights) else set()
        if self.conv_kind == "gatconv" and len(self.weights):
            first |= {id(self.att_src[0]), id(self.att_dst[0])}
        if self.embed is not None:
            first.add(id(self.embed.weight))
        return [p for p in self.parameters() if id(p) not in first]

    # -- graph structure -------------------------------------------------------------------
    def _edges(self, data, n: int) -> torch.Tensor:
        parts = [data[et].edge_index for et in data.edge_types]
        ei = torch.cat(parts, 1) if parts else torch.empty(2, 0, dtype=torch.long)
        if getattr(data[self.node_type], "batch_size", None) is None:
            # a graph stored both ways is used as stored (duplicates merged), so that edges an
            # augmentation adds one way (graphens-ego's ens_edges=in) stay one way
            return coalesce(ei, num_nodes=n) if self._stored_undirected else to_undirected(ei, num_nodes=n)
        if self._stored_undirected:  # sampled: the in-edges already are the neighbours (see above)
            return coalesce(ei, num_nodes=n)
        raise HgimbError("gcn/sage/gatconv mini-batch training needs the graph stored with both edge directions "
                         "(the sampler follows in-edges); drop --batch-size to train full-batch")

    def _graph(self, data, what: str, heads: int = 1):
        n = int(data[self.node_type].num_nodes)
        tensors = [data[et].edge_index for et in data.edge_types]

        def build():
            ei = remove_self_loops(self._edges(data, n))[0]
            if what == "sage":  # mean over neighbours, no self-loop
                return FixedAdjacency.from_edge_index(ei, n, n, norm="mean")
            loops = torch.arange(n, device=ei.device)
            ei = torch.cat([ei, torch.stack([loops, loops])], 1)
            if what == "gcn":  # D^-1/2 (A + I) D^-1/2, or D^-1 (A + I) with norm=target
                return FixedAdjacency.from_edge_index(ei, n, n, norm="sym" if self.gcn_norm == "sym" else "mean")
            order = torch.argsort(ei[1] * n + ei[0])  # by destination (HeadCSR's layout)
            src, dst = ei[0][order], ei[1][order]
            return src, dst, HeadCSR(src, dst, n, n, heads)

        return self._graphs.get(tensors, (what, heads, n), build)

    # -- layers ----------------------------------------------------------------------------
    def _project(self, i: int, h, weight: torch.Tensor) -> torch.Tensor:
        """``h @ weight^T``; ``h`` is a dense tensor or ``(SparseFeatures, values, x)`` (``x``: the
        dense features when they require a gradient, else None)."""
        if isinstance(h, tuple):
            feats, values, x = h
            return feats.matmul(weight.t(), values, x)
        return h @ weight.t()

    def _conv(self, i: int, h, data) -> torch.Tensor:
        w, b = self.weights[i], self.biases[i]
        if self.conv_kind == "gcn":
            return spmm(self._graph(data, "gcn"), self._project(i, h, w)) + b
        if self.conv_kind == "sage":
            out = w.size(0) // 2
            both = self._project(i, h, w)  # [N, 2 * out]: neighbours' share | root share
            root = both[:, out:] + b
            return spmm_add(root, self._graph(data, "sage"), both[:, :out].contiguous())
        src, dst, graph = self._graph(data, "gat", self.heads)
        xw = self._project(i, h, w).view(-1, self.heads, w.size(0) // self.heads)
        a_src = (xw * self.att_src[i]).sum(-1)
        a_dst = (xw * self.att_dst[i]).sum(-1)
        alpha = softmax(F.leaky_relu(a_src[src] + a_dst[dst], 0.2), dst, num_nodes=xw.size(0))
        return head_spmm(alpha, xw, graph).reshape(xw.size(0), -1) + b

    def _last_aggregation(self, h: torch.Tensor, data) -> torch.Tensor:
        """The aggregation half of the output convolution (its linear half is ``head``)."""
        if self.conv_kind == "gcn":
            return spmm(self._graph(data, "gcn"), h)
        if self.conv_kind == "sage":
            return torch.cat([spmm(self._graph(data, "sage"), h), h], 1)
        src, dst, graph = self._graph(data, "gat", 1)
        # a . (W h) = (W^T a) . h with W the head's weight: GATConv(hidden, C, heads=1)'s scores
        s_src = h @ (self.head.weight.t() @ self.out_att_src)
        s_dst = h @ (self.head.weight.t() @ self.out_att_dst)
        alpha = softmax(F.leaky_relu(s_src[src] + s_dst[dst], 0.2), dst, num_nodes=h.size(0))
        return head_spmm(alpha.unsqueeze(1), h.unsqueeze(1), graph).squeeze(1)

    def _input(self, data):
        store = data[self.node_type]
        if self.embed is not None:
            n_id = getattr(store, "n_id", None)
            h = self.embed.weight if n_id is None else self.embed.weight[n_id]
            return dropout(h, self.dropout, self.training) if self.input_dropout else h
        x = store.x
        dense_grad = x.requires_grad and self.input_dropout and self.training  # see the module docstring
        feats = None if dense_grad else self._inputs.get([x], "x", lambda: SparseFeatures.of(x.detach()))
        if feats is None:
            return dropout(x, self.dropout, self.training) if self.input_dropout else x
        values = feats.values
        if self.input_dropout:
            values = dropout(values, self.dropout, self.training)  # zeros stay zeros: drop stored values only
        return feats, values, (x if x.requires_grad else None)

    def _hidden(self, data) -> torch.Tensor:
        """Every node's input to the output layer: the convolutions, and with ``head=conv`` the
        dropout before the output convolution (whose aggregation then ``encode`` applies)."""
        h = self._input(data)
        last = len(self.weights) - 1
        stack = self.layout == "stack"
        for i in range(len(self.weights)):
            if i > 0 and stack:
                h = dropout(h, self.dropout, self.training)
            h = self._conv(i, h, data)
            if i < last or self.head_style == "conv" or not stack:
                h = F.relu(h)
        if not stack:  # graphens: conv -> ReLU blocks, one dropout before the linear head
            h = dropout(h, self.dropout, self.training)
        if self.head_style == "conv":
            h = dropout(h, self.dropout, self.training)
        return h

    def encode(self, data) -> torch.Tensor:
        h = self._hidden(data)
        if self.head_style == "conv":
            h = self._last_aggregation(h, data)
        return first_rows(h, seed_count(data, self.node_type))

    def encode_extended(self, data, extend) -> Tuple[torch.Tensor, torch.Tensor]:
        """``encode(data)`` plus synthetic nodes inserted before the output convolution (the
        ``hidden`` hook of a remedy's augmentation: GraphSMOTE). ``extend`` receives a
        :class:`~hgimb.imbalance.base.HiddenGraph`: every node's input to the output layer and one
        relation, ``"edges"``, the graph's edges (both directions, no self-loops); it returns
        :class:`~hgimb.imbalance.base.HiddenNodes`: the new rows and their in-edges from real nodes. Returns ``(encode(data), the new nodes' outputs)``; a new node
        aggregates its own row and its in-neighbours' as the output convolution aggregates a real
        node's (GCN: ``1 / sqrt(d_i d_j)`` with the real nodes' degrees of the graph; SAGE: mean of
        the neighbours, own row beside it; GAT: attention over the neighbours and itself). Real
        nodes do not receive messages from the new ones."""
        if self.head_style != "conv":
            raise HgimbError(f"model '{self.conv_kind}' ends in a linear head: inserting synthetic nodes before the "
                             "output layer needs the output layer to be a graph convolution (--model-option "
                             "style=reference)")
        h = self._hidden(data)
        n = h.size(0)
        edges = remove_self_loops(self._edges(data, n))[0]
        new = extend(HiddenGraph(h, {HOMOGENEOUS_RELATION: HiddenRelation(h, edges)}))
        out = first_rows(self._last_aggregation(h, data), seed_count(data, self.node_type))
        return out, self._aggregate_new(h, new, edges)

    def _aggregate_new(self, h: torch.Tensor, new, edges: torch.Tensor) -> torch.Tensor:
        """The output convolution's aggregation for the new nodes of ``new`` (see encode_extended)."""
        count = new.h.size(0)
        src, dst = (t.to(h.device) for t in new.relation(HOMOGENEOUS_RELATION))
        if self.conv_kind == "sage":
            agg = torch.zeros(count, h.size(1), dtype=h.dtype, device=h.device).index_add_(0, dst, h[src])
            deg = torch.bincount(dst, minlength=count).clamp_min(1).to(h.dtype)
            return torch.cat([agg / deg.unsqueeze(1), new.h], 1)
        # GCN and GAT aggregate over the neighbours and the node itself (self-loop)
        src_rows = torch.cat([h[src], new.h])
        dst_all = torch.cat([dst, torch.arange(count, device=h.device)])
        if self.conv_kind == "gcn":
            deg_new = (torch.bincount(dst, minlength=count) + 1).to(h.dtype)
            if self.gcn_norm == "sym":
                deg_real = (torch.bincount(edges[1], minlength=h.size(0)) + 1).to(h.dtype)
                weight = torch.cat([deg_real[src], deg_new]).rsqrt() * deg_new[dst_all].rsqrt()
            else:  # target: a mean over the neighbours and the node itself
                weight = 1.0 / deg_new[dst_all]
        else:
            s_src = src_rows @ (self.head.weight.t() @ self.out_att_src)
            s_dst = new.h @ (self.head.weight.t() @ self.out_att_dst)
            weight = softmax(F.leaky_relu(s_src + s_dst[dst_all], 0.2), dst_all, num_nodes=count)
        out = torch.zeros(count, h.size(1), dtype=h.dtype, device=h.device)
        return out.index_add_(0, dst_all, src_rows * weight.unsqueeze(1))


@register_model("gcn", kinds=("node",), help="GCN (Kipf & Welling 2017), equal to PyG GCNConv; one node type; style=hgimb|reference",
                params=PARAMS)
def build_gcn(task, cfg):
    return HomogeneousGNN(task, cfg, "gcn")


@register_model("sage", kinds=("node",), help="GraphSAGE (Hamilton et al. 2017), equal to PyG SAGEConv (mean); one node type; style=hgimb|reference",
                params=PARAMS)
def build_sage(task, cfg):
    return HomogeneousGNN(task, cfg, "sage")


@register_model("gatconv", kinds=("node",), help="GAT (Velickovic et al. 2018), equal to PyG GATConv; one node type; style=hgimb|reference",
                params=PARAMS)
def build_gatconv(task, cfg):
    return HomogeneousGNN(task, cfg, "gatconv")
