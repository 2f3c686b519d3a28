"""``graphsha`` -- GraphSHA (Li, Wang, Xiong & Lai, KDD 2023, "GraphSHA: Synthesizing Harder
Samples for Class-Imbalanced Node Classification", arXiv 2306.09612), following the authors' code
(github.com/wenzhilics/GraphSHA: ``main.py``, ``gens.py``, ``neighbor_dist.py``, ``args.py``).

Input-level synthesis through the ``augment`` hook: every training step appends synthetic
minority nodes (features and edges) to the graph the encoder runs on; their labels join the
loss after the real training rows, so any loss remedy composes (``graphsha+balanced-softmax``,
``graphsha+tam``: tam gives the synthetic rows no margin). Epochs count from 0, as in ``main.py``.

After the warmup (epoch ``> sha_warmup``, ``main.py``), SemiMixup with hard anchors
(``gens.sampling_node_source``), with ``P = softmax(z / sha_tau)`` of the previous training step's
logits ``z`` of the training nodes (``prev_out``):

* balance: class ``c`` gets ``int(m - n_c)`` synthetic nodes (none when ``<= 0``), ``m`` the mean
  training class size (``sha_max=true``: the largest, the code's ``--max``);
* anchor (source) ``a``: drawn with replacement from the training nodes of ``c`` with probability
  proportional to ``1 - P[a, c] + 1e-12`` (harder nodes more often);
* auxiliary class ``k``: drawn with probability proportional to ``P[a, :] + 1e-12`` with ``P[a, c]``
  set to 0 (``sha_no_mask=true`` keeps it, the code's ``--no_mask``);
* auxiliary node ``b``: a training node of ``k``, drawn with probability proportional to
  ``P[b, c] + 1e-12`` (the nodes of ``k`` that look most like ``c``);
* features ``x_new = lam * x[a] + (1 - lam) * x[b]``, ``lam ~ Beta(1, 100)`` (``saliency_mixup``);
  label ``c`` (the anchor's);
* edges (``gens.neighbor_sampling``): a degree ``d`` drawn from the graph's degree histogram
  (``P(d)`` proportional to the number of nodes of in-degree ``d``), capped at the anchor's
  in-degree, then ``d`` distinct neighbours drawn without replacement from the *anchor's* row of
  the neighbour distribution (``sha_gdc``: ``ppr`` -- personalised PageRank ``alpha = 0.05``, top
  128 per column, column-normalised, the code's default ``get_PPR_adj``; ``hk`` -- heat kernel
  ``t = 5``, entries ``>= 1e-4``, column-normalised, ``get_heat_adj``; ``none`` -- uniform over the
  anchor's distinct in-neighbours, ``get_ins_neighbor_dist``). The diffusions are PyG's
  ``torch_geometric.transforms.GDC`` (exact, dense), which computes the code's
  ``neighbor_dist.py`` matrices; they are computed once per run, on the training device. The
  neighbours come from the *anchor's* neighbourhood, not the auxiliary node's (``main.py`` passes
  ``sampling_src_idx`` to ``neighbor_sampling``): SemiMixup mixes the features only, so the
  synthetic node sits near the auxiliary class in feature space while its topology stays in the
  anchor's (minor class) subgraph.

During the warmup (``main.py``'s ``else`` branch, GraphENS's sampler): ``n_max - n_c`` synthetic
nodes per class, sources uniform within the class, targets from all training nodes with
probability proportional to ``log(n_c) / n_c`` of their class (``graphens_pairs``), ``lam ~ Beta(2,
2)``, and the synthetic node copies all in-edges of its source (``gens.duplicate_neighbor``).

Hardness (``prev_out``) is the previous training step's output for the training nodes, as in
``main.py``: the ``synthesize`` hook reads the step's embeddings of the real training rows and
keeps ``head(h)`` (no gradient; the same dropout-perturbed training forward pass the code keeps).
So ``graphsha`` owns ``synthesize`` (returning None: it changes no embedding) and does not
combine with another synthesis remedy (``smote``, ``mixup``, ``graphens``) -- it is one.

Relation-aware edges on heterogeneous graphs (ACM): the synthetic target node gets edges along
every relation incident to the target type
(:func:`~hgimb.imbalance.graph_augment.target_relations`), each sampled on its own from the
anchor's neighbours in that relation. A relation whose destination is the target type is an
*incoming view*: neighbours are the anchor's in-neighbours ``u`` in it and the new edges ``u ->
new`` (the code's direction); if the graph also stores that relation's exact reverse (same edges
transposed: ACM's author-to_paper-paper and paper-to_author-author, or paper-cite-paper and
paper-ref-paper), the mirrored edges ``new -> u`` are appended to the reverse, so both directions
stay consistent (a relation stored in both directions, such as Cora's cites, is its own reverse).
A relation from the target type to another type without a stored reverse is an *outgoing view*
(the anchor's out-neighbours, edges ``new -> u``). Each view samples its degree from its own
degree histogram over the target nodes (capped at the anchor's degree in that view). Neighbour
distributions: for relations between target nodes, ``sha_gdc`` on the union of every such relation
made undirected (the graph hgimb's homogeneous models see; ACM: cite + ref, 3,025 papers); for
relations to another node type, the uniform 1-hop distribution (``none``) whatever ``sha_gdc``
says, because the exact diffusion is dense over the nodes of both types: on one CPU thread the
whole ppr set-up takes 3.5 s on Cora (2,708 nodes) and 5.6 s on ACM's 3,025 papers, while the
inverse and per-column sort of a dense 8,984 x 8,984 matrix (paper + author) take about 60 s, each
run. Featureless target types (Freebase's movies) cannot receive synthetic nodes: refused with one
line (:func:`~hgimb.imbalance.graph_augment.node_features`). Tasks with several target types are
refused.

Deviations from the authors' code:

* neighbours are drawn without replacement from the support of the anchor's distribution only
  (exponential race, the same distribution as ``torch.multinomial`` without replacement); the
  code adds 1e-12 to every node and, when the support is smaller than the drawn degree, links the
  synthetic node to random non-neighbours;
* the diffusions are float32 (PyG's GDC) where the code uses float64 numpy; entries near the
  top-128 cut-off may order differently;
* hgimb's ``gcn``/``sage``/``gatconv`` treat every graph as undirected, so the synthetic node's
  edges also carry messages from it to its neighbours (the code's GCN only sends messages into
  it, leaving the real nodes' outputs unchanged); the heterogeneous models see the appended
  reverse edges likewise;
* the warmup copies the source's in-edges (``duplicate_neighbor`` copies its out-edges as
  in-edges of the new node: the same on undirected graphs such as Cora's);
* classes without training nodes get no synthetic node and are never chosen as an auxiliary
  class (the code would fail on an empty class);
* the draws use the run's generator (``torch.multinomial`` per class and per anchor/auxiliary
  class pair, numpy's Beta seeded from it), so runs are deterministic per seed;
* with a sampler that owns the epoch's items (``graphsha+balanced-sampler``), a training node
  missing from a step keeps the logits of the last step that had it (the code trains on every
  training node each epoch);
* heterogeneous graphs: the relation-aware views above (the code is homogeneous only); tasks
  with more than one target node type are refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import GDC
from torch_geometric.utils import coalesce, to_undirected

from ..errors import HgimbError
from ..params import Param, Range
from .base import BatchContext, GraphAugmentation, Remedy, RemedyContext
from .graph_augment import EdgeType, append_nodes, node_features, reverse_relation, target_relations
from .graph_remedies import graphens_pairs
from .registry import register_remedy
from .samplers import draw_seed

SHA_GDC = ("ppr", "hk", "none")
PPR_ALPHA, PPR_TOPK = 0.05, 128  # main.py: get_PPR_adj(..., alpha=0.05, k=128, eps=None)
HEAT_T, HEAT_EPS = 5.0, 1e-4  # main.py: get_heat_adj(..., t=5.0, k=None, eps=0.0001)
SHA_BETA = (1.0, 100.0)  # main.py: lam ~ Beta(1, 100) after the warmup
WARMUP_BETA = (2.0, 2.0)  # main.py: lam ~ Beta(2, 2) during the warmup
# The exact diffusion is an N x N dense inverse (ppr) or eigendecomposition (hk) plus an N x N
# argsort (int64): 3.5 s and about 0.2 GB at Cora's 2,708 nodes on one CPU thread, cubic in N.
MAX_DENSE_NODES = 20_000


# ---------------------------------------------------------------------------------- neighbour rows
@dataclass
class Rows:
    """Per-node candidate lists in CSR form: node ``i``'s candidates are ``col[rowptr[i]:rowptr[i+1]]``
    with weights ``weight`` (the same slice)."""

    rowptr: torch.Tensor
    col: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def of(cls, row: torch.Tensor, col: torch.Tensor, n: int, weight: Optional[torch.Tensor] = None) -> "Rows":
        order = torch.argsort(row, stable=True)
        rowptr = torch.zeros(n + 1, dtype=torch.long)
        rowptr[1:] = torch.cumsum(torch.bincount(row, minlength=n), 0)
        w = torch.ones(row.numel()) if weight is None else weight.float()
        return cls(rowptr, col[order], w[order])

    def sizes(self, nodes: torch.Tensor) -> torch.Tensor:
        return self.rowptr[nodes + 1] - self.rowptr[nodes]

    def take(self, nodes: torch.Tensor, counts: torch.Tensor, rng: torch.Generator
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """For each position ``i``, ``counts[i]`` distinct candidates of ``nodes[i]`` drawn without
        replacement with probability proportional to their weights (capped at the row size).
        Returns ``(position, candidate)`` pairs. Sorting exponential keys ``E / w`` gives successive
        weighted draws without replacement (Efraimidis-Spirakis), vectorised over all rows.
        Kept instead of the code's ``torch.multinomial`` on dense rows: those are ``[synthetic
        nodes, N]`` per relation and step (ogbn-arxiv-sized, 169k nodes x 10k synthetic nodes:
        1.7e9 floats), while these rows hold the distribution's support only."""
        sizes = self.sizes(nodes)
        counts = torch.minimum(counts, sizes)
        pos = torch.repeat_interleave(torch.arange(nodes.numel()), sizes)
        if pos.numel() == 0:
            return pos, pos.clone()
        first = torch.cumsum(sizes, 0) - sizes
        entry = self.rowptr[nodes][pos] + torch.arange(pos.numel()) - first[pos]
        u = torch.rand(pos.numel(), generator=rng, device=rng.device).cpu().clamp_min(1e-12)
        key = -torch.log(u) / self.weight[entry].clamp_min(1e-30)
        order = torch.argsort(key)
        order = order[torch.argsort(pos[order], stable=True)]  # by row, ascending key within a row
        rank = torch.arange(pos.numel()) - first[pos[order]]
        keep = order[rank < counts[pos[order]]]
        return pos[keep], self.col[entry[keep]]

    def copy(self, nodes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Every candidate of each ``nodes[i]`` (with repeats): ``(position, candidate)`` pairs."""
        sizes = self.sizes(nodes)
        pos = torch.repeat_interleave(torch.arange(nodes.numel()), sizes)
        first = torch.cumsum(sizes, 0) - sizes
        entry = self.rowptr[nodes][pos] + torch.arange(pos.numel()) - first[pos]
        return pos, self.col[entry]


def diffusion_rows(edge_index: torch.Tensor, n: int, method: str, device: torch.device) -> Rows:
    """The code's ``get_PPR_adj`` / ``get_heat_adj`` neighbour distribution of an undirected graph
    with PyG's exact GDC (self-loops of weight 1, symmetric normalisation, then top-128 per column
    or entries >= 1e-4, column-normalised); row ``i`` is node ``i``'s distribution, as the code
    reads ``neighbor_dist_list[src]``."""
    if n > MAX_DENSE_NODES:
        raise HgimbError(f"remedy 'graphsha': sha_gdc={method} needs a dense {n} x {n} diffusion (more than "
                         f"{MAX_DENSE_NODES:,} nodes); use --remedy-param sha_gdc=none")
    if method == "ppr":
        gdc = GDC(self_loop_weight=1, normalization_in="sym", normalization_out="col",
                  diffusion_kwargs=dict(method="ppr", alpha=PPR_ALPHA),
                  sparsification_kwargs=dict(method="topk", k=PPR_TOPK, dim=0), exact=True)
    else:
        gdc = GDC(self_loop_weight=1, normalization_in="sym", normalization_out="col",
                  diffusion_kwargs=dict(method="heat", t=HEAT_T),
                  sparsification_kwargs=dict(method="threshold", eps=HEAT_EPS), exact=True)
    out = gdc(Data(edge_index=edge_index.to(device), num_nodes=n))
    ei, w = out.edge_index.cpu(), out.edge_attr.cpu()
    return Rows.of(ei[0], ei[1], n, w)


# ---------------------------------------------------------------------------------- relation views
@dataclass
class View:
    """One relation along which a synthetic target node gets neighbours (module docstring)."""

    rel: EdgeType
    incoming: bool  # neighbours are in-neighbours (edges u -> new); else out-neighbours (new -> u)
    mirror: Optional[EdgeType]  # the stored reverse relation, which gets the mirrored edges
    edges: Rows  # each target node's neighbours in this view, with repeats (the warmup copies them)
    dist: Rows  # each target node's neighbour distribution (the SemiMixup draws)
    degree: torch.Tensor  # [n_target] degree in this view (edges, with repeats)
    degree_hist: torch.Tensor  # [max degree + 1] number of target nodes of each degree


def relation_views(data, node_type: str, gdc: str, device: torch.device) -> List[View]:
    n = int(data[node_type].num_nodes)
    rels = target_relations(data, node_type)
    incoming = [r for r in rels if r[2] == node_type]
    mirrors = {r: reverse_relation(data, r) for r in incoming}
    covered = set(incoming) | {m for m in mirrors.values() if m is not None}
    outgoing = [r for r in rels if r not in covered]
    same = [data[r].edge_index.cpu() for r in rels if r[0] == r[2] == node_type]
    diffused = None
    if gdc != "none" and same:
        diffused = diffusion_rows(to_undirected(torch.cat(same, 1), num_nodes=n), n, gdc, device)
    views = []
    for rel, inward in [(r, True) for r in incoming] + [(r, False) for r in outgoing]:
        ei = data[rel].edge_index.cpu()
        mine, other = (ei[1], ei[0]) if inward else (ei[0], ei[1])
        degree = torch.bincount(mine, minlength=n)
        if diffused is not None and rel[0] == rel[2]:
            dist = diffused
        else:  # get_ins_neighbor_dist: uniform over distinct neighbours
            pairs = coalesce(torch.stack([mine, other]))
            dist = Rows.of(pairs[0], pairs[1], n)
        views.append(View(rel, inward, mirrors.get(rel), Rows.of(mine, other, n), dist, degree,
                          torch.bincount(degree).float()))
    return views


def view_edges(views: List[View], anchors: torch.Tensor, n: int, rng: torch.Generator, copy: bool
               ) -> Dict[EdgeType, torch.Tensor]:
    """Edges of synthetic nodes ``n + i`` (``i``: position in ``anchors``, node ids of the target
    type) per relation: every neighbour of the anchor (``copy``, the warmup) or SemiMixup's draw."""
    parts: Dict[EdgeType, List[torch.Tensor]] = {}
    for view in views:
        if copy:
            pos, nbr = view.edges.copy(anchors)
        else:
            if float(view.degree_hist.sum()) <= 0:
                continue
            drawn = torch.multinomial(view.degree_hist, anchors.numel(), replacement=True, generator=rng)
            pos, nbr = view.dist.take(anchors, torch.minimum(drawn, view.degree[anchors]), rng)
        new = pos + n
        forward = torch.stack([nbr, new]) if view.incoming else torch.stack([new, nbr])
        parts.setdefault(view.rel, []).append(forward)
        if view.mirror is not None:
            parts.setdefault(view.mirror, []).append(forward.flip(0))
    return {rel: torch.cat(p, 1) for rel, p in parts.items()}


# ---------------------------------------------------------------------------------- hard anchors
def sha_added(counts: torch.Tensor, use_max: bool) -> torch.Tensor:
    """How many synthetic nodes each class gets after the warmup: ``int(m - n_c)``, ``m`` the mean
    class size over all classes (``use_max``: the largest); none for an empty class or when <= 0."""
    counts = counts.double()
    target = counts.max() if use_max else counts.sum() / counts.numel()
    num = torch.trunc(target - counts)
    return torch.where((num > 0) & (counts > 0), num, torch.zeros_like(num))


def hard_pairs(probs: torch.Tensor, labels: torch.Tensor, num_classes: int, use_max: bool, no_mask: bool,
               rng: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """``gens.sampling_node_source``: rows ``(anchor, auxiliary)`` into the training nodes, given
    ``probs = softmax(prev_logits / tau)`` ``[n_train, C]`` and their labels (module docstring)."""
    counts = torch.bincount(labels, minlength=num_classes)
    added = sha_added(counts, use_max)
    members = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    src_all, dst_all = [], []
    for c in range(num_classes):
        num = int(added[c])
        if num <= 0:
            continue
        rows = members[c]
        src = rows[torch.multinomial(1.0 - probs[rows, c] + 1e-12, num, replacement=True, generator=rng)]
        conf = probs[src].clone()
        if not no_mask:
            conf[:, c] = 0.0
        conf = conf + 1e-12
        conf[:, counts == 0] = 0.0  # never an empty auxiliary class
        if float(conf.sum(1).min()) <= 0:
            conf[:, c] = 1.0  # only class c has training nodes: the auxiliary is another node of c
        aux_class = torch.multinomial(conf, 1, generator=rng).flatten()
        dst = torch.empty_like(src)
        for k in torch.unique(aux_class).tolist():
            slot = torch.nonzero(aux_class == k).flatten()
            pool = members[k]
            pick = torch.multinomial(probs[pool, c] + 1e-12, slot.numel(), replacement=True, generator=rng)
            dst[slot] = pool[pick]
        src_all.append(src)
        dst_all.append(dst)
    if not src_all:
        empty = torch.empty(0, dtype=torch.long)
        return empty, empty
    return torch.cat(src_all), torch.cat(dst_all)


def beta_draws(shape: Tuple[float, float], size: int, rng: torch.Generator) -> torch.Tensor:
    """``lam ~ Beta(a, b)``, ``[size, 1]``; torch's Beta sampler takes no Generator, so numpy's,
    seeded from the run's generator, keeps the draws deterministic."""
    lam = np.random.default_rng(draw_seed(rng)).beta(shape[0], shape[1], size=(size, 1))
    return torch.as_tensor(lam, dtype=torch.float32)


# ---------------------------------------------------------------------------------- the remedy
@register_remedy
class GraphSHA(Remedy):
    """GraphSHA: SemiMixup of hard minority anchors with nodes of their most confusable class, input-level synthetic nodes with anchor-neighbourhood edges (Li et al. KDD 2023)."""

    name = "graphsha"
    spec = (Param("sha_warmup", int, 5, "epochs (from 0) of GraphENS-style warmup synthesis before SemiMixup "
                  "(the code's --warmup: 5)", Range(0)),
            Param("sha_tau", float, 2.0, "softmax temperature of the hardness (the code's --tau: 2)",
                  Range(0, low_open=True)),
            Param("sha_max", bool, False, "balance to the largest class instead of the mean (the code's --max)"),
            Param("sha_no_mask", bool, False, "allow the anchor's own class as the auxiliary class (the code's --no_mask)"),
            Param("sha_gdc", str, "ppr", "neighbour distribution of the synthetic edges (the code's --gdc: ppr)",
                  choices=SHA_GDC))

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.warmup, self.tau = self.p["sha_warmup"], self.p["sha_tau"]
        self.model: Optional[torch.nn.Module] = None
        self.items: Optional[torch.Tensor] = None

    def check(self, ctx: RemedyContext) -> None:
        if ctx.kind != "node" or ctx.task is None or ctx.task.data is None:
            raise HgimbError("remedy 'graphsha' synthesises nodes with edges and needs a node task with its graph")
        if len(ctx.task.target_types) != 1:
            raise HgimbError(f"remedy 'graphsha' synthesises nodes of one target type; '{ctx.task.name}' has "
                             f"{len(ctx.task.target_types)} ({', '.join(ctx.task.target_types)})")
        node_features(ctx.task.data, ctx.task.target_types[0], self.name)

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        data = ctx.task.data
        self.node_type = ctx.task.target_types[0]
        self.views = relation_views(data, self.node_type, self.p["sha_gdc"], ctx.device)
        self.train_nodes = ctx.train_index.cpu()
        self.train_labels = ctx.train_labels.cpu()
        self.position = torch.full((ctx.task.num_items,), -1, dtype=torch.long)
        self.position[self.train_nodes] = torch.arange(self.train_nodes.numel())
        self.prev = torch.zeros(self.train_nodes.numel(), ctx.num_classes)  # prev_out of the training nodes

    def init_model(self, model: torch.nn.Module) -> None:
        self.model = model

    def loss_class_counts(self, counts: torch.Tensor) -> torch.Tensor:
        """After the warmup (the first ``sha_warmup + 1`` epochs fill every class to the largest)."""
        return counts + sha_added(counts, self.p["sha_max"])

    def batch(self, step: BatchContext) -> None:
        self.items = step.items

    def pairs(self, epoch: int, rng: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, bool]:
        """Rows ``(source, auxiliary)`` into the training nodes for ``epoch``, and whether it is SemiMixup."""
        if epoch > self.warmup:
            probs = torch.softmax(self.prev / self.tau, dim=1)
            src, dst = hard_pairs(probs, self.train_labels, self.ctx.num_classes, self.p["sha_max"],
                                  self.p["sha_no_mask"], rng)
            return src, dst, True
        src, dst = graphens_pairs(self.train_labels, self.ctx.num_classes, rng)
        return src, dst, False

    def augment(self, data, step: BatchContext, rng) -> Optional[GraphAugmentation]:
        src, dst, sha = self.pairs(step.epoch, rng)
        if src.numel() == 0:
            return None
        x = node_features(data, self.node_type, self.name)
        anchors, aux = self.train_nodes[src], self.train_nodes[dst]
        lam = beta_draws(SHA_BETA if sha else WARMUP_BETA, src.numel(), rng).to(x.device, x.dtype)
        a, b = anchors.to(x.device), aux.to(x.device)
        x_new = lam * x[a] + (1.0 - lam) * x[b]
        n = int(data[self.node_type].num_nodes)
        edges = view_edges(self.views, anchors, n, rng, copy=not sha)
        return append_nodes(data, [self.node_type], self.node_type, x_new, edges, self.train_labels[src].to(x.device))

    def synthesize(self, h, y, rng):
        """Keeps the training rows' logits of this step (the code's ``prev_out``); changes nothing."""
        if self.items is None or self.model is None:
            return None
        n = self.items.numel()
        with torch.no_grad():
            logits = self.model.head(h[:n].detach()).float().cpu()
        rows = self.position[self.items.cpu()]
        keep = rows >= 0
        self.prev[rows[keep]] = logits[keep]
        return None
