"""Simple-HGN (Lv et al., KDD 2021, "Are we really making much progress?"), the HGB baseline.

A GAT over the whole heterogeneous graph viewed as one homogeneous graph, with three changes:
1. learnable edge-type embeddings enter the attention logits:
   ``e_ij = LeakyReLU(a_l·W h_j + a_r·W h_i + a_e·W_r r_type(ij))``;
2. residual connections on nodes (all layers but the first) and on attention
   (``alpha = (1 - beta) * alpha + beta * alpha_previous_layer``, beta = 0.05);
3. the output is L2-normalised.
Self-loops are added with their own edge type, as in the HGB code.

Why not PyG's ``GATConv``: it takes edge features, not a per-relation embedding table with the
attention residual, so the layer is written here: PyG's ``softmax`` for the attention and a
multi-head CSR aggregation (:func:`attention_aggregate`, :func:`hgimb.models.sparse.attention.head_spmm`)
that never materialises per-edge messages, with the node residual summed into its output buffer.

Layout (HGB ``myGAT``, THUDM/HGB NC/benchmark/methods/baseline/GNN.py and conv.py): input
projection per node type (``HeteroInput``: features projected, featureless types get learnable
embeddings; both initialised as HGB's ``fc_list``, xavier-normal gain 1.414) -> ``layers``
multi-head layers (``heads`` x ``hidden``, ELU) -> one single-head output layer to
``num_classes`` dims with node residual -> L2 normalisation, and those unit-norm class scores are
the logits (HGB feeds them to ``log_softmax``; the head here is the frozen identity,
:class:`NormalisedLogits`). ``output=linear`` keeps the earlier layout instead: a ``hidden``-wide
output layer, L2-normalised, then a trained linear head. That layout learned slower at HGB's lr
5e-4 (best epochs 294-299 of 300 on ACM): the logits' scale is the head's weight norm, which Adam
grows by ~lr per step, so the validation loss kept falling with the scale alone.

Remaining deviations from the HGB code: featureless types are embedding tables, not a linear
map of a sparse identity, so they have no per-type bias (HGB's ``fc`` bias, U(+-1/sqrt(N)));
dropout masks come from hgimb's byte-per-element CPU dropout (``sparse.dropout``: p rounded to
1/256, different random draws from torch's); each layer computes only the nodes the rows asked
for read (``encode_rows``; the same values); edges are typed per stored relation (HGB's DGL graph merges duplicate
(u, v) pairs of different relations into one edge of the last type; hgimb keeps each); early
stopping is the trainer's (best validation loss, patience 30: HGB's ``EarlyStopping`` also
restores the best checkpoint).

Options (``cfg.options``): ``edge_dim`` (64), ``beta`` (0.05), ``negative_slope`` (0.05),
``attn_dropout`` (defaults to ``cfg.dropout``), ``output`` (``hgb`` | ``linear``),
``input_init`` (``hgb`` | ``default``: HeteroInput's own initialisation).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.index import index2ptr
from torch_geometric.utils import add_self_loops, remove_self_loops, softmax

from ..imbalance.base import HiddenGraph, HiddenRelation
from .base import GraphModel, HeteroInput, seed_count, single_target_type
from ..params import Param, Range
from .registry import register_model
from .sparse.attention import HeadCSR, head_spmm
from .sparse.dense import dropout, narrow_mm

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

    Edges are sorted by (destination, source), so that softmax groups are contiguous (``ptr``)
    and the edges into any range of destination nodes are one contiguous slice. The multi-head
    product structures (:class:`~hgimb.models.sparse.attention.HeadCSR`) are built once per head count,
    and once per set of output rows for a layer that computes only some nodes (:meth:`into`).
    """

    def __init__(self, edge_index: torch.Tensor, edge_type: torch.Tensor, num_nodes: int):
        n = int(num_nodes)
        src, dst = edge_index[0], edge_index[1]
        perm = torch.argsort(dst * n + src)
        self.num_nodes = n
        self.src, self.dst, self.edge_type = src[perm], dst[perm], edge_type[perm]
        self.num_edges = int(self.src.numel())
        self.ptr = index2ptr(self.dst, n)
        self._products: Dict[Tuple, Tuple] = {}
        self._plans: Dict[Tuple, List[LayerRows]] = {}

    @property
    def edge_index(self) -> torch.Tensor:
        return torch.stack([self.src, self.dst])

    def head_csr(self, heads: int) -> HeadCSR:
        """The product structure for all edges, ``heads`` heads."""
        key = ("all", heads)
        if key not in self._products:
            self._products[key] = HeadCSR(self.src, self.dst, self.num_nodes, self.num_nodes, heads)
        return self._products[key]

    def plan(self, seeds: torch.Tensor, layers: int) -> List["LayerRows"]:
        """The rows each of ``layers`` stacked layers must compute so that the last one outputs
        the nodes ``seeds`` (sorted, distinct): last layer first built, returned first layer
        first. Exact for attention layers: a node's output reads only its in-edges, their
        sources and itself. Cached for the last few seed sets (the training and validation
        items repeat every epoch)."""
        key = (seeds.cpu().numpy().tobytes(), int(layers))
        if key not in self._plans:
            steps, rows = [], seeds
            for _ in range(layers):
                steps.append(LayerRows(self, rows))
                rows = steps[-1].in_rows
            self._plans[key] = steps[::-1]
            while len(self._plans) > 8:
                self._plans.pop(next(iter(self._plans)))
        return self._plans[key]

    def into(self, ranges: Tuple[Tuple[int, int], ...], heads: int) -> Tuple[torch.Tensor, HeadCSR, torch.Tensor]:
        """For output rows ``ranges`` (``(start, stop)`` node ranges, in output order): the ids
        of the edges into them (in order), the product structure over those edges (output row
        ``r`` = the r-th node of the ranges), and the node ids of the output rows."""
        key = (tuple((int(a), int(b)) for a, b in ranges), heads)
        if key not in self._products:
            edges, rows, dst = [], [], []
            out = 0
            for a, b in key[0]:
                lo, hi = int(self.ptr[a]), int(self.ptr[b])
                edges.append(torch.arange(lo, hi, device=self.src.device))
                rows.append(torch.arange(a, b, device=self.src.device))
                dst.append(self.dst[lo:hi] - a + out)
                out += b - a
            edges, rows, dst = torch.cat(edges), torch.cat(rows), torch.cat(dst)
            self._products[key] = (edges, HeadCSR(self.src[edges], dst, self.num_nodes, out, heads), rows)
        return self._products[key]


class LayerRows:
    """One layer's share of a :meth:`AttentionGraph.plan`: it outputs the nodes ``rows`` (sorted)
    from inputs at the nodes ``in_rows`` (sorted; the sources of the edges into ``rows``, which
    include ``rows`` through the self-loops). ``edges``: ids (graph order, ascending) of the
    edges into ``rows``; ``src_pos`` / ``dst_pos``: each such edge's source position in
    ``in_rows`` and destination position in ``rows``; ``self_pos``: each output row's position in
    ``in_rows`` (its residual and destination score)."""

    def __init__(self, graph: AttentionGraph, rows: torch.Tensor):
        lo, hi = graph.ptr[rows], graph.ptr[rows + 1]
        counts = hi - lo
        within = (torch.arange(int(counts.sum()), device=rows.device)
                  - torch.repeat_interleave(counts.cumsum(0) - counts, counts))
        self.rows = rows
        self.edges = torch.repeat_interleave(lo, counts) + within
        src = graph.src.index_select(0, self.edges)
        self.in_rows = torch.unique(torch.cat([src, rows]))
        self.src_pos = torch.searchsorted(self.in_rows, src)
        self.self_pos = torch.searchsorted(self.in_rows, rows)
        self.dst_pos = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), counts)
        self.ptr = index2ptr(self.dst_pos, rows.numel())
        self.edge_type = graph.edge_type.index_select(0, self.edges)
        self._products: Dict[int, HeadCSR] = {}

    def product(self, heads: int) -> HeadCSR:
        if heads not in self._products:
            self._products[heads] = HeadCSR(self.src_pos, self.dst_pos, self.in_rows.numel(), self.rows.numel(), heads)
        return self._products[heads]


def attention_aggregate(alpha: torch.Tensor, h: torch.Tensor, graph: AttentionGraph,
                        base: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sum of attention-weighted source features per destination, ``[N, heads, F]`` (plus
    ``base`` when given, fused into the same buffer).

    Gathering ``h[src]`` would materialise ``[E, heads, F]`` messages (1.1 GB per tensor at
    8 x 64 on HGB ACM's 560k edges, several per layer with autograd); :func:`head_spmm` is one
    weighted ``embedding_bag`` forward and one plus a sampled dense-dense product backward, on
    the node-major layout (no transposes).
    """
    return head_spmm(alpha, h, graph.head_csr(h.size(1)), base)


class SimpleHGNConv(nn.Module):
    """One Simple-HGN attention layer on an :class:`AttentionGraph` (homogeneous view).

    ``forward(x, graph, res_attn=None, rows=None) -> (out [N, heads, out_channels], attn [E, heads])``
    with edges in ``graph`` order; the returned attention is detached (HGB code) and feeds the next
    layer's attention residual. ``rows`` restricts the output to some node ranges (the output
    layer computes the target rows only).
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
        # dropout with hgimb's cheaper CPU mask (``sparse.dropout``): torch's Bernoulli draw was
        # ~10% of a Freebase epoch at 8 x 64
        self.dropout, self.attn_dropout = float(dropout), float(attn_dropout)
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
        return self._attention(x, graph.src, graph.dst, graph.edge_type, graph.ptr, graph.num_nodes)

    def _attention(self, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, edge_type: torch.Tensor,
                   ptr: torch.Tensor, num_dst: int) -> torch.Tensor:
        """Attention over edges ``(src, dst)`` (row positions in ``x``; sorted by ``dst``, groups
        ``ptr`` over ``num_dst`` destinations)."""
        # a_src . (W x)_head = x . (W_head^T a_src,head): fold the attention vectors into the
        # weight (an [in, heads] matrix per side, both sides in one [in, 2 heads] product)
        # instead of reducing an [N, heads, F] product
        weight = self.lin.weight.view(self.heads, self.out_channels, -1)
        att = torch.stack([self.att_src[0], self.att_dst[0]])  # [2, H, F]
        scores = narrow_mm(x, torch.einsum("hfi,shf->ish", weight, att).reshape(weight.size(-1), 2 * self.heads))
        score_src, score_dst = scores[:, : self.heads], scores[:, self.heads:]
        # edge-type scores are computed on the small embedding table, then gathered per edge
        logits = (score_src.index_select(0, src) + score_dst.index_select(0, dst)
                  + self.edge_type_scores().index_select(0, edge_type))
        return softmax(F.leaky_relu(logits, self.negative_slope), ptr=ptr, num_nodes=num_dst)

    def forward(self, x: torch.Tensor, graph: AttentionGraph, res_attn: Optional[torch.Tensor] = None,
                rows: Optional[Tuple[Tuple[int, int], ...]] = None,
                dropped: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``rows`` (``(start, stop)`` node ranges): compute only those output rows, in that
        order (the attention over all edges is still returned, for the next layer). ``dropped``:
        ``x`` after this layer's input dropout, when the caller drew it (:meth:`forward_new` reads
        the same rows)."""
        h_in = dropout(x, self.dropout, self.training) if dropped is None else dropped
        h = self.lin(h_in).view(-1, self.heads, self.out_channels)
        alpha = dropout(self.attention(h_in, graph), self.attn_dropout, self.training)
        if res_attn is not None and self.beta > 0:
            alpha = alpha * (1.0 - self.beta) + res_attn * self.beta
        if rows is None or tuple(rows) == ((0, graph.num_nodes),):
            product, alpha_used, res_in = graph.head_csr(self.heads), alpha, h_in
        else:  # the edges into the rows are slices of the (destination-sorted) edge list
            edges, product, row_ids = graph.into(rows, self.heads)
            alpha_used, res_in = alpha.index_select(0, edges), h_in.index_select(0, row_ids)
        base = None if self.res is None else self.res(res_in).view(res_in.size(0), -1, self.out_channels)
        out = head_spmm(alpha_used, h, product, base)  # the residual is summed in the product's buffer
        if self.activation:
            out = F.elu(out)
        return out, alpha.detach()

    def forward_new(self, h_in: torch.Tensor, new_in: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                    edge_type: torch.Tensor) -> torch.Tensor:
        """The layer's output ``[S, heads, out_channels]`` for ``S`` nodes outside the graph:
        ``new_in`` their dropped-out inputs, in-edges ``src`` (graph node ids, rows of the
        dropped-out inputs ``h_in``) -> ``dst`` (positions ``0..S-1``) of type ``edge_type``, and
        a self-loop each (the self-loop type), as :meth:`forward` treats a real node's in-edges,
        without an attention residual (the output layer has none)."""
        count = new_in.size(0)
        loops = torch.arange(count, device=new_in.device)
        rows_in = torch.cat([h_in.index_select(0, src), new_in])
        dst_all = torch.cat([dst, loops])
        types = torch.cat([edge_type, torch.full((count,), self.edge_emb.num_embeddings - 1, dtype=torch.long,
                                                 device=new_in.device)])
        h = self.lin(rows_in).view(-1, self.heads, self.out_channels)
        h_new = h[src.numel():]  # the self-loop rows are the new nodes' own projections
        logits = ((h * self.att_src).sum(-1) + (h_new * self.att_dst).sum(-1).index_select(0, dst_all)
                  + self.edge_type_scores().index_select(0, types))
        alpha = softmax(F.leaky_relu(logits, self.negative_slope), dst_all, num_nodes=count)
        alpha = dropout(alpha, self.attn_dropout, self.training)
        out = h.new_zeros(count, self.heads, self.out_channels).index_add_(0, dst_all, alpha.unsqueeze(-1) * h)
        if self.res is not None:
            out = out + self.res(new_in).view(count, -1, self.out_channels)
        return F.elu(out) if self.activation else out

    def forward_rows(self, x: torch.Tensor, graph: AttentionGraph, step: LayerRows,
                     res_attn: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` for the rows of one :class:`LayerRows`: ``x`` holds the layer input at
        ``step.in_rows``; returns the output at ``step.rows`` and the attention over all the
        graph's edges (zero outside ``step.edges``: the next layer reads only its own, a subset).
        Equal to :meth:`forward`'s rows, dropout included: the masks are drawn for the whole
        graph and their rows applied."""
        h_in = dropout(x, self.dropout, self.training, rows=step.in_rows, num_rows=graph.num_nodes)
        h = self.lin(h_in).view(-1, self.heads, self.out_channels)
        dst = step.self_pos.index_select(0, step.dst_pos)
        alpha = self._attention(h_in, step.src_pos, dst, step.edge_type, step.ptr, step.rows.numel())
        alpha = dropout(alpha, self.attn_dropout, self.training, rows=step.edges, num_rows=graph.num_edges)
        if res_attn is not None and self.beta > 0:
            alpha = alpha * (1.0 - self.beta) + res_attn.index_select(0, step.edges) * self.beta
        base = None
        if self.res is not None:
            res_in = h_in.index_select(0, step.self_pos)
            base = self.res(res_in).view(res_in.size(0), -1, self.out_channels)
        out = head_spmm(alpha, h, step.product(self.heads), base)
        if self.activation:
            out = F.elu(out)
        full = alpha.new_zeros(graph.num_edges, alpha.size(1)).index_copy_(0, step.edges, alpha.detach())
        return out, full


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
    edge_index, edge_type = remove_self_loops(edge_index, edge_type)
    edge_index, edge_type = add_self_loops(edge_index, edge_type, fill_value=len(edge_types), num_nodes=start)
    return AttentionGraph(edge_index, edge_type, start), offsets


OUTPUTS = ("hgb", "linear")
INPUT_INITS = ("hgb", "default")
PARAMS = (  # --model-option parameters
    Param("edge_dim", int, 64, "edge-type embedding width", Range(1)),
    Param("beta", float, 0.05, "attention residual weight", Range(0, 1)),
    Param("negative_slope", float, 0.05, "LeakyReLU slope of the attention scores", Range(0)),
    Param("attn_dropout", float, None, "dropout on attention coefficients (default: --dropout)",
          Range(0, 1, high_open=True), none=True),
    Param("output", str, "hgb", "hgb: last layer outputs the classes (HGB); linear: a linear head", choices=OUTPUTS),
    Param("input_init", str, "hgb", "input projection initialisation: HGB's or HeteroInput's", choices=INPUT_INITS),
)


class NormalisedLogits(nn.Linear):
    """The head of ``output=hgb``: the identity, frozen. HGB's L2-normalised output layer *is*
    the logits (``F.log_softmax`` of unit-norm class scores, no layer after it); keeping an
    ``nn.Linear`` here (weight = I, bias = 0, neither trained) lets ``prior-bias`` still set a
    bias and embedding-space remedies still call ``model.head``."""

    def __init__(self, num_classes: int):
        super().__init__(num_classes, num_classes)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.copy_(torch.eye(self.in_features, dtype=self.weight.dtype))
            self.bias.zero_()


class SimpleHGN(GraphModel):
    extends_hidden = True  # encode_extended: synthetic target nodes before the output layer (GraphSMOTE)

    @property
    def num_hops(self) -> int:  # the hidden convolutions and the output one
        return len(self.convs) + 1

    def __init__(self, task, cfg):
        options = cfg.options  # validated against PARAMS by the registry
        hidden, heads = int(cfg.hidden), int(cfg.heads)
        self_output, input_init = options["output"], options["input_init"]
        super().__init__(task.num_classes if self_output == "hgb" else hidden, task.num_classes)
        self.output, self.input_init = self_output, input_init
        self.target_types = list(task.target_types)
        self.edge_types = list(task.data.edge_types)
        edge_dim, beta, slope = options["edge_dim"], options["beta"], options["negative_slope"]
        attn_dropout = cfg.dropout if options["attn_dropout"] is None else options["attn_dropout"]
        num_edge_types = len(self.edge_types) + 1  # + self-loop type
        self.input = HeteroInput(task.data, hidden)
        self.convs = nn.ModuleList()
        in_dim = hidden
        for layer in range(max(int(cfg.layers), 1)):
            self.convs.append(SimpleHGNConv(
                in_dim, hidden, heads, num_edge_types, edge_dim, cfg.dropout, attn_dropout, slope,
                residual=layer > 0, activation=True, beta=beta))
            in_dim = hidden * heads
        out_width = task.num_classes if self.output == "hgb" else hidden
        self.out_conv = SimpleHGNConv(in_dim, out_width, 1, num_edge_types, edge_dim, cfg.dropout,
                                      attn_dropout, slope, residual=True, activation=False, beta=beta)
        if self.output == "hgb":
            self.head = NormalisedLogits(task.num_classes)
        self._view_cache = None  # (data, view): the full graph's homogeneous view, built once
        self._hgb_input_init()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._hgb_input_init()

    def _hgb_input_init(self) -> None:
        """HGB's input projections: ``xavier_normal_(gain=1.414)`` on every ``fc_list`` weight. An
        id-feature type's embedding row is a column of that weight (HGB multiplies a sparse
        identity), and ``xavier_normal_`` on ``[N, hidden]`` has the same spread as on
        ``[hidden, N]``. (HeteroInput's own init: PyTorch's Linear default, ~3.4x smaller on
        ACM's 1,902 paper features, and xavier-uniform gain 1 embeddings.)"""
        if self.input_init != "hgb":
            return
        for lin in self.input.proj.values():
            nn.init.xavier_normal_(lin.weight, gain=1.414)
        for emb in self.input.embed.values():
            nn.init.xavier_normal_(emb.weight, gain=1.414)

    def _view(self, data):
        if self._view_cache is not None and self._view_cache[0] is data:
            return self._view_cache[1]
        view = homogeneous_view(data, self.edge_types)
        if getattr(data[self.target_types[0]], "batch_size", None) is None:  # cache full graphs only
            self._view_cache = (data, view)
        return view

    def _hidden(self, data):
        """``(h, graph, offsets)``: every node's input to the output layer (the multi-head layers
        on the full homogeneous view), the view and its per-type node offsets."""
        graph, offsets = self._view(data)
        x_dict = self.input(data)
        h = torch.cat([x_dict[nt] for nt in data.node_types], 0)
        res_attn = None
        for conv in self.convs:
            h, res_attn = conv(h, graph, res_attn)
            h = h.flatten(1)
        return h, graph, offsets

    def encode(self, data) -> torch.Tensor:
        h, graph, offsets = self._hidden(data)
        # the output layer computes the target rows only (the seeds of a sampled subgraph)
        rows = tuple((offsets[t], offsets[t] + seed_count(data, t)) for t in self.target_types)
        h, _ = self.out_conv(h, graph, None, rows=rows)  # HGB: no attention residual here
        h = h.mean(1)
        return F.normalize(h, p=2, dim=-1, eps=1e-12)

    def encode_extended(self, data, extend) -> Tuple[torch.Tensor, torch.Tensor]:
        """``encode(data)`` plus synthetic target-type nodes inserted before the output layer (a
        remedy's ``hidden`` hook: GraphSMOTE), as :meth:`RGCN.encode_extended
        <hgimb.models.rgcn.RGCN.encode_extended>` does: ``extend`` receives the target type's input
        rows to the output layer and, keyed by edge type, every relation into the target type with
        its source type's rows (self-loops dropped, as the homogeneous view drops them); it returns
        the new rows with their in-edges per relation. A new node goes through the output layer as
        a real one would (:meth:`SimpleHGNConv.forward_new`: attention with its edges' type
        embeddings over its in-edges and a self-loop, the node residual), then the L2 normalisation.
        Real nodes receive nothing from the new ones."""
        target = single_target_type("simple-hgn", self.target_types)
        h, graph, offsets = self._hidden(data)
        start, count = offsets[target], int(data[target].num_nodes)
        rows_of = {target: h[start: start + count]}
        relations = {}
        for et in self.edge_types:
            if et[2] != target:
                continue
            if et[0] not in rows_of:
                rows_of[et[0]] = h[offsets[et[0]]: offsets[et[0]] + int(data[et[0]].num_nodes)]
            edges = data[et].edge_index
            if et[0] == et[2]:
                edges = remove_self_loops(edges)[0]
            relations[et] = HiddenRelation(rows_of[et[0]], edges)
        new = extend(HiddenGraph(rows_of[target], relations))
        dropped = dropout(h, self.out_conv.dropout, self.out_conv.training)
        out, _ = self.out_conv(h, graph, None, rows=((start, start + seed_count(data, target)),), dropped=dropped)
        type_index = {et: i for i, et in enumerate(self.edge_types)}
        src, dst, types = [], [], []
        for et in relations:
            s_, d_ = new.relation(et)
            src.append(s_.to(h.device) + offsets[et[0]])
            dst.append(d_.to(h.device))
            types.append(torch.full((s_.numel(),), type_index[et], dtype=torch.long, device=h.device))
        empty = torch.empty(0, dtype=torch.long, device=h.device)
        new_in = dropout(new.h, self.out_conv.dropout, self.out_conv.training)
        out_new = self.out_conv.forward_new(dropped, new_in, torch.cat(src) if src else empty,
                                            torch.cat(dst) if dst else empty, torch.cat(types) if types else empty)
        normalise = lambda t: F.normalize(t.mean(1), p=2, dim=-1, eps=1e-12)  # noqa: E731
        return normalise(out), normalise(out_new)

    def encode_rows(self, data, rows: torch.Tensor) -> torch.Tensor:
        """``encode(data)[rows]`` computing only what those rows read: each layer outputs the
        nodes the next one aggregates from (:meth:`AttentionGraph.plan`), so a training step on
        Freebase's 837 training movies computes the second 512-wide layer on 15,103 of 43,854
        nodes and validation on 4,063. Same values and the same dropout draws as the full pass
        (tested); sampled subgraphs take :meth:`encode`."""
        if getattr(data[self.target_types[0]], "batch_size", None) is not None:
            return self.encode(data)[rows]
        graph, offsets = self._view(data)
        counts = torch.tensor([int(data[t].num_nodes) for t in self.target_types], device=rows.device)
        starts = counts.cumsum(0) - counts
        kind = torch.searchsorted(starts, rows, right=True) - 1
        shift = torch.tensor([offsets[t] for t in self.target_types], device=rows.device) - starts
        seeds, order = torch.unique(rows + shift[kind], return_inverse=True)
        plan = graph.plan(seeds, len(self.convs) + 1)
        x_dict = self.input(data)
        h = torch.cat([x_dict[nt] for nt in data.node_types], 0).index_select(0, plan[0].in_rows)
        res_attn = None
        for conv, step in zip(self.convs, plan):
            h, res_attn = conv.forward_rows(h, graph, step, res_attn)
            h = h.flatten(1)
        h, _ = self.out_conv.forward_rows(h, graph, plan[-1], None)  # HGB: no attention residual here
        h = F.normalize(h.mean(1), p=2, dim=-1, eps=1e-12)
        return h.index_select(0, order)


@register_model("simple-hgn", kinds=("node",), help="Simple-HGN (Lv et al. KDD 2021): GAT with edge-type attention, residuals, L2 norm",
                params=PARAMS,
                # HGB's run settings for Simple-HGN (its run_new.py defaults; early stopping on val loss)
                defaults={k: HGB_DEFAULTS["_all"][k] for k in ("hidden", "heads", "layers", "dropout", "lr", "weight_decay",
                                                               "epochs", "patience")} | {"monitor": "loss"})
def build_simple_hgn(task, cfg):
    return SimpleHGN(task, cfg)


__all__ = ["SimpleHGN", "SimpleHGNConv", "AttentionGraph", "attention_aggregate", "HGB_DEFAULTS", "hgb_defaults",
           "homogeneous_view"]
