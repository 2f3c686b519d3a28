"""``graphens-ego`` -- GraphENS as published (Park, Song & Yang, ICLR 2022): synthetic ego networks
in input space, following the authors' code (github.com/JoonHyung-Park/GraphENS: ``main_semi.py``,
``models/gens.py``, ``args.py``). The embedding-space ``graphens`` (graph_remedies.py) is a
separate, simpler remedy.

Every training step (full-graph training: one per epoch) appends synthetic labelled nodes to the
graph through the ``augment`` hook, and the model trains on the augmented graph (real training
nodes, then the synthetic ones, in one loss; evaluation uses the original graph):

* **how many, from what** (``sampling_idx_individual_dst``): each class ``c`` gets ``n_max - n_c``
  synthetic nodes (training-split counts); each has a *source* drawn uniformly from class ``c``'s
  training nodes and a *target* drawn from all training nodes with probability proportional to
  ``log(n_k) / n_k`` of the target's class ``k``; it takes the source's label;
* **features** (``saliency_mixup``): ``x = lam * x_src + (1 - lam) * x_dst`` with
  ``lam ~ Beta(ens_alpha, ens_alpha)`` per synthetic node, except ``K = int(D * ens_keep_prob)``
  feature columns drawn without replacement with probability proportional to the target's
  saliency ``|dL/dx_dst| + 1e-10`` (the gradient of the previous step's training loss w.r.t. the
  input features), which take the source's value (``lam = 1``). Only the first
  ``floor(sigmoid(KL / 3) * K)`` drawn columns count (the others repeat the first one), so a pair
  whose predictions differ more keeps more source features;
* **neighbours** (``neighbor_sampling``): ``KL = KL(p_src || p_dst)`` (clipped at 0) between the
  two nodes' predictions ``p = softmax(mean_{N(v) + v}(logits) / ens_pred_temp)``; the synthetic
  node's in-neighbours are drawn without replacement from
  ``sigmoid(KL) * N_src + (1 - sigmoid(KL)) * N_dst``, where ``N_v`` is uniform over
  ``v``'s distinct in-neighbours; how many: a degree drawn from the graph's in-degree histogram,
  capped at the source's in-degree;
* **warm-up** (``ens_warmup`` epochs, the code's ``epoch <= warmup``): plain mixup of the features
  (one ``lam`` for all columns) and a copy of the source's neighbours (``duplicate_neighbor``).

The saliency: the augmented graph's target features are a leaf tensor with ``requires_grad`` that
the remedy keeps; after the trainer's backward its ``.grad`` is the next step's saliency (the
code reads the same gradient with a backward hook on its first layer's linear map). The
homogeneous backbones keep their sparse input product for such features and return
``dL/dx = dL/d(XW) W`` from it (hgimb/models/homogeneous.py; with input dropout in training,
``style=hgimb``, they take the dense product); the heterogeneous backbones' input projection
(hgimb/models/base.py ``HeteroInput``) takes the dense product. docs/imbalanced-nodes.md has the
measured cost per epoch.

Heterogeneous graphs (ACM): synthetic nodes are of the (single) target type ``T``. For every
relation ``(A, r, T)`` into ``T``, the synthetic node's in-neighbours along ``r`` are sampled as
above from the source's and target's in-neighbour distributions *in that relation* (degree
histogram and cap per relation too; one ``KL`` per node from the target-type predictions); the
edges ``A -> new`` go into ``r`` and, when the graph stores ``r``'s reverse (a relation
``(T, r', A)`` holding exactly the same edges the other way, or ``r`` itself when it is symmetric),
the edges ``new -> A`` go into the reverse, so the graph stays consistent (ACM: author->paper and
paper->author, subject, term, and cite/ref, each receiving its reverse). A relation out of ``T``
whose reverse is not stored carries no message into the synthetic node and gets no edges. The
predictions' neighbourhood mean uses ``tam``'s relation-aware neighbourhood
(:class:`~hgimb.imbalance.graph_remedies.NeighbourMean`: the target-target relations made
undirected plus a self-loop, else target -> X -> target paths). Featureless target types
(Freebase's ``movie``) cannot receive input-level nodes: refused in one line. Composes with any
loss remedy (``graphens-ego+tam``: synthetic rows get no margin; ``+balanced-softmax``); not with
another synthesis or augmentation remedy.

Deviations from the authors' code:

* the predictions ``p`` come by default (``ens_pred=eval``) from a no-grad full-graph pass in
  eval mode at the start of each step, with the current weights; the code reuses the logits of
  the previous training forward pass (dropout on, weights before the last update):
  ``ens_pred=train`` does that (the trainer hands the step's encoded graph to the augmentation's
  ``on_encoded``; the real nodes' rows through the head are kept for the next step);
* the saliency is ``dL/dx`` of the raw features; with ``style=hgimb``'s input dropout (the
  code's networks have none) that is the gradient before the dropout;
* epochs count from 0: warm-up is ``epoch < ens_warmup`` (the code: ``epoch <= warmup`` from 1,
  the same epochs); ``ens_warmup >= 1`` as the code asserts;
* edges go both ways by default (the reverse relation above); the code adds only ``neighbour ->
  new`` edges, so its synthetic nodes never send messages to real nodes: ``ens_edges=in`` does
  that (the homogeneous backbones keep a graph stored both ways as given, so the one-way edges
  stay one way there; with ``norm=sym`` the source side of those edges is normalised by its
  out-degree, where PyG's ``gcn_norm`` uses the in-degree on both sides);
* neighbour distributions and degrees count distinct in-neighbours (the code's neighbour
  distribution is 0/1 too, but its degree counts duplicate edges); during warm-up the copied
  neighbours are the source's in-neighbours (the code copies its out-neighbours as in-edges: the
  same on a graph stored both ways, such as Cora);
* the degree histogram covers every node of the target type; the long-tailed script
  (``main_lt.py``) leaves out the nodes it removed (``--imbalance-type long-tail-remove`` keeps
  them as isolated nodes, so degree 0 is drawn more often there);
* neighbours are drawn with Efraimidis-Spirakis keys on the mixture's non-zero entries (the same
  distribution as the code's successive draws without replacement), ``d`` per node instead of
  ``max in-degree + 1`` (the first ``d`` draws have the same distribution); the code's ``1e-12``
  added to every other node (at most ``N * 1e-12`` of the mass per draw; a drawn degree never
  exceeds the source's neighbours, so it never has to fill up) is left out, and no dense
  ``N x N`` neighbour-distribution matrix is built;
* synthetic nodes are not sorted by source index (their order changes nothing); random draws
  come from the trainer's generator (``lam`` via numpy's Beta seeded from it, as ``graphens``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.index import index2ptr
from torch_geometric.utils import coalesce

from ..errors import HgimbError
from ..params import Param, Range
from .base import BatchContext, GraphAugmentation, Remedy, RemedyContext
from .graph_augment import append_nodes, node_features, reverse_relation, target_relations
from .graph_remedies import NeighbourMean, full_graph_logits, graphens_added, graphens_pairs
from .registry import register_remedy
from .samplers import draw_seed

EdgeType = Tuple[str, str, str]
KL_MASK_SCALE = 3.0  # saliency_mixup: sigmoid(dist_kl / 3.) * K (fixed in the code)
SALIENCY_EPS = 1e-10  # saliency_mixup: saliency_dst += 1e-10


# ---------------------------------------------------------------------------------- pieces
def saliency_mask(saliency: torch.Tensor, kl: torch.Tensor, keep_prob: float,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Boolean ``[m, D]``: the feature columns each synthetic node takes from its source, given its
    target's saliency ``[m, D]`` and the pair's ``KL`` ``[m]`` (``saliency_mixup``'s adaptive mask:
    ``K = int(D * keep_prob)`` columns drawn by ``|saliency| + 1e-10``, the first
    ``floor(sigmoid(KL / 3) * K)`` of them kept, at least one when ``K >= 1``)."""
    m, dim = saliency.shape
    k = int(dim * keep_prob)
    mask = torch.zeros(m, dim, dtype=torch.bool, device=saliency.device)
    if k == 0 or m == 0:
        return mask
    weight = saliency.abs() + SALIENCY_EPS
    weight = weight / weight.sum(1, keepdim=True)
    drawn = torch.multinomial(weight, k, replacement=False, generator=generator)  # [m, K]
    keep = (torch.sigmoid(kl.to(weight.dtype) / KL_MASK_SCALE) * k).long()  # truncation, as .long() in the code
    later = torch.arange(k, device=drawn.device).unsqueeze(0) >= keep.to(drawn.device).unsqueeze(1)
    drawn = torch.where(later, drawn[:, :1].expand_as(drawn), drawn)
    mask[torch.arange(m, device=drawn.device).unsqueeze(1), drawn] = True
    return mask


def mix_features(x_src: torch.Tensor, x_dst: torch.Tensor, lam: torch.Tensor,
                 keep: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``lam * x_src + (1 - lam) * x_dst`` with ``lam [m, 1]`` set to 1 where ``keep`` is True."""
    lam = lam.to(x_src.dtype).expand_as(x_src)
    if keep is not None:
        lam = torch.where(keep, torch.ones_like(lam), lam)
    return lam * x_src + (1.0 - lam) * x_dst


def prediction_kl(p_src: torch.Tensor, p_dst: torch.Tensor) -> torch.Tensor:
    """``KL(p_src || p_dst)`` per row, clipped at 0 (``get_dist_kl``)."""
    kl = F.kl_div(torch.log(p_dst), p_src, reduction="none").sum(1)
    return kl.clamp_min(0.0)


@dataclass
class InRelation:
    """One relation ``(A, r, T)`` into the target type: the distinct in-neighbours of every target
    node in CSR form, and where the reverse edges go (``reverse``: a relation storing the same
    edges the other way, ``rel`` itself when symmetric, or None)."""

    rel: EdgeType
    reverse: Optional[EdgeType]
    indptr: torch.Tensor  # [n_T + 1]
    indices: torch.Tensor  # neighbours (local ids of type A), grouped by target node, ascending
    num_neighbours: int  # nodes of type A
    degree_hist: torch.Tensor  # [max degree + 1]: target nodes with each in-degree (float)

    @classmethod
    def build(cls, data, rel: EdgeType, node_type: str) -> "InRelation":
        n_t, n_a = int(data[node_type].num_nodes), int(data[rel[0]].num_nodes)
        ei = data[rel].edge_index
        by_dst = coalesce(ei.flip(0), num_nodes=max(n_t, n_a))  # (target node, neighbour), distinct, sorted
        indptr = index2ptr(by_dst[0], n_t)
        degree = indptr.diff()
        return cls(rel=rel, reverse=reverse_relation(data, rel), indptr=indptr, indices=by_dst[1].contiguous(),
                   num_neighbours=n_a, degree_hist=torch.bincount(degree).float())

    @property
    def degree(self) -> torch.Tensor:
        return self.indptr.diff()

    def to(self, device) -> "InRelation":
        self.indptr, self.indices = self.indptr.to(device), self.indices.to(device)
        self.degree_hist = self.degree_hist.to(device)
        return self

    def neighbours_of(self, nodes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(owner, neighbour)``: every distinct in-neighbour of each ``nodes[i]`` (owner ``i``)."""
        counts = self.degree[nodes]
        owner = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), counts)
        first = torch.repeat_interleave(self.indptr[nodes], counts)
        offset = torch.arange(owner.numel(), device=nodes.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts)
        return owner, self.indices[first + offset]

    def mixture(self, src: torch.Tensor, dst: torch.Tensor, src_share: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The non-zero entries ``(row i, neighbour, weight)`` of ``neighbor_sampling``'s
        ``ratio_src * N_src + ratio_dst * N_dst`` for pairs ``(src[i], dst[i])``, ``N_v`` uniform over
        ``v``'s distinct in-neighbours (the code's L1-normalised ``neighbor_dist_list`` rows);
        sorted by row, then neighbour."""
        s_owner, s_nbr = self.neighbours_of(src)
        d_owner, d_nbr = self.neighbours_of(dst)
        share = src_share.float()
        s_w = share[s_owner] / self.degree[src][s_owner].float()
        d_w = (1.0 - share[d_owner]) / self.degree[dst][d_owner].float()
        key = torch.cat([s_owner * self.num_neighbours + s_nbr, d_owner * self.num_neighbours + d_nbr])
        key, inverse = torch.unique(key, return_inverse=True)
        weight = torch.zeros(key.numel(), device=key.device).index_add_(0, inverse, torch.cat([s_w, d_w]))
        return key // self.num_neighbours, key % self.num_neighbours, weight


def sample_neighbours(relation: InRelation, src: torch.Tensor, dst: torch.Tensor, src_share: torch.Tensor,
                      generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(synthetic node i, neighbour)`` pairs of ``neighbor_sampling`` in one relation: a degree
    from the in-degree histogram capped at the source's, then that many distinct neighbours drawn
    one after another, each with probability proportional to its weight in
    ``src_share * N_src + (1 - src_share) * N_dst`` (``torch.multinomial`` without replacement).

    Drawn as Efraimidis-Spirakis keys ``Exp(1) / weight``, the ``d`` smallest per node (the same
    distribution as successive draws), on the mixture's non-zero entries only: on ACM the code's
    dense ``[synthetic nodes x candidates]`` multinomial took 0.5 s of a 1.4 s epoch."""
    m = src.numel()
    empty = torch.empty(0, dtype=torch.long, device=src.device)
    if m == 0 or relation.degree_hist.numel() == 0:
        return empty, empty
    hist = relation.degree_hist.unsqueeze(0).expand(m, -1)
    degree = torch.multinomial(hist, 1, generator=generator).squeeze(1)
    degree = torch.minimum(degree, relation.degree[src])
    owner, nbr, weight = relation.mixture(src, dst, src_share)
    keys = torch.empty(weight.size(0), device=weight.device).exponential_(generator=generator) / weight
    keys = torch.where(weight > 0, keys, torch.full_like(keys, float("inf")))  # a zero share is never drawn
    order = torch.argsort(keys, stable=True)
    order = order[torch.argsort(owner[order], stable=True)]  # by node, then by key
    owner, nbr = owner[order], nbr[order]
    counts = torch.bincount(owner, minlength=m)
    rank = torch.arange(owner.numel(), device=owner.device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts,
                                                                                      counts)
    take = rank < degree[owner]
    return owner[take], nbr[take]


def copy_neighbours(relation: InRelation, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``duplicate_neighbor``: every in-neighbour of each source, for its synthetic node."""
    return relation.neighbours_of(src)


# ---------------------------------------------------------------------------------- the remedy
@register_remedy
class GraphENSEgo(Remedy):
    """GraphENS as published: synthetic minority ego networks in input space (saliency-masked feature mixup, KL-adaptive neighbour sampling; Park et al. ICLR 2022)."""

    name = "graphens-ego"
    # ens_ prefixes, shared with 'graphens' (ens_alpha means the same there)
    spec = (Param("ens_alpha", float, 2.0, "lam ~ Beta(ens_alpha, ens_alpha) (the GraphENS code: 2)",
                  Range(0, low_open=True)),
            Param("ens_keep_prob", float, 0.01, "share of feature columns drawn by saliency and kept from the "
                  "source (the code's keep_prob: 0.01)", Range(0, 1)),
            Param("ens_pred_temp", float, 2.0, "temperature of the predictions whose KL mixes the neighbour "
                  "distributions (the code's pred_temp: 2)", Range(0, low_open=True)),
            Param("ens_warmup", int, 1, "epochs of plain mixup with copied neighbours (the code's warmup: 1)",
                  Range(1)),
            Param("ens_edges", str, "both", "both: synthetic nodes also send to their neighbours (reverse edges); "
                  "in: neighbour -> synthetic only (the code)", choices=("both", "in")),
            Param("ens_pred", str, "eval", "logits behind the KL: eval (a no-grad eval-mode pass with the current "
                  "weights) or train (the previous training pass's, dropout on: the code's prev_out)",
                  choices=("eval", "train")))

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.alpha, self.keep_prob = self.p["ens_alpha"], self.p["ens_keep_prob"]
        self.pred_temp, self.warmup = self.p["ens_pred_temp"], self.p["ens_warmup"]
        self.both_ways = self.p["ens_edges"] == "both"
        self.train_pred = self.p["ens_pred"] == "train"
        self.prev_logits: Optional[torch.Tensor] = None  # ens_pred=train: the last training pass's real-node logits
        self.model: Optional[torch.nn.Module] = None
        self.leaf: Optional[torch.Tensor] = None  # the last augmented graph's target features (their .grad: saliency)

    def check(self, ctx: RemedyContext) -> None:
        if ctx.kind != "node" or ctx.task is None or ctx.task.data is None:
            raise HgimbError(f"remedy '{self.name}' synthesises nodes with edges in a graph; this is a {ctx.kind} "
                             "task: use graphens, smote or mixup instead")
        task = ctx.task
        if len(task.target_types) != 1:
            raise HgimbError(f"remedy '{self.name}' synthesises nodes of one target type; '{task.name}' has "
                             f"{len(task.target_types)} ({', '.join(task.target_types)})")
        node_features(task.data, task.target_types[0], self.name)
        if not any(rel[2] == task.target_types[0] for rel in task.data.edge_types):
            raise HgimbError(f"remedy '{self.name}': '{task.name}' has no relation into '{task.target_types[0]}', "
                             "so synthetic nodes cannot get neighbours; use graphens instead")

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        task = ctx.task
        self.device = ctx.device
        self.node_type = nt = task.target_types[0]
        data = task.data
        self.num_nodes = int(data[nt].num_nodes)
        self.relations: List[InRelation] = [InRelation.build(data, rel, nt).to(self.device)
                                            for rel in target_relations(data, nt) if rel[2] == nt]
        self.aggregate = NeighbourMean(task).to(self.device)
        offset = task.type_offsets()[nt]
        self.train_nodes = (ctx.train_index - offset).to(self.device)
        self.train_labels = ctx.train_labels.to(self.device)

    def init_model(self, model: torch.nn.Module) -> None:
        self.model = model

    def loss_class_counts(self, counts: torch.Tensor) -> torch.Tensor:
        return counts + graphens_added(counts)

    @torch.no_grad()
    def predictions(self, data) -> torch.Tensor:
        """``softmax(mean over each node's neighbourhood and itself of the logits / ens_pred_temp)``,
        logits from an eval-mode full-graph pass, or (``ens_pred=train``) the previous training
        pass's logits of the real nodes, as the code's ``prev_out``."""
        if self.train_pred and self.prev_logits is not None:
            logits = self.prev_logits
        else:
            logits = full_graph_logits(self.model, data, self.num_nodes, self.name)
        return torch.softmax(self.aggregate(logits) / self.pred_temp, dim=1)

    def keep_training_logits(self, h: torch.Tensor, real_rows: Optional[torch.Tensor] = None) -> None:
        """``on_encoded`` of the step's augmentation: the real nodes' logits of this training pass."""
        rows = h[: self.num_nodes] if real_rows is None else h[real_rows.to(h.device)]
        with torch.no_grad():
            self.prev_logits = self.model.head(rows).float()

    def saliency(self) -> torch.Tensor:
        """The previous step's ``dL/dx`` of the real target nodes."""
        grad = None if self.leaf is None else self.leaf.grad
        if grad is None:
            raise HgimbError(f"remedy '{self.name}' needs the gradient of the training loss w.r.t. the input features "
                             "(its saliency), and the model gave none; use a model that reads the features "
                             "(gcn, sage, gatconv, rgcn, gat, simple-hgn)")
        return grad[: self.num_nodes]

    def augment(self, data, step: BatchContext, rng: torch.Generator) -> Optional[GraphAugmentation]:
        nt = self.node_type
        x = node_features(data, nt, self.name)
        rows_src, rows_dst = graphens_pairs(self.train_labels, self.ctx.num_classes, rng)
        saliency = self.saliency() if self.leaf is not None and step.epoch >= self.warmup else None
        self.leaf = None
        if rows_src.numel() == 0:
            return None
        device = x.device
        src, dst = self.train_nodes[rows_src].to(device), self.train_nodes[rows_dst].to(device)
        # torch's Beta sampler takes no Generator; numpy seeded from it stays deterministic
        lam = np.random.default_rng(draw_seed(rng)).beta(self.alpha, self.alpha, size=(src.numel(), 1))
        lam = torch.as_tensor(lam, dtype=x.dtype, device=device)
        gen = torch.Generator(device=device).manual_seed(draw_seed(rng))
        if step.epoch < self.warmup:
            x_new = mix_features(x[src], x[dst], lam)
            pairs = {r.rel: copy_neighbours(r, src) for r in self.relations}
        else:
            if saliency is None:  # warm-up ran, so a previous step left its gradient
                raise HgimbError(f"remedy '{self.name}': no saliency from a previous step at epoch {step.epoch}")
            probs = self.predictions(data)
            kl = prediction_kl(probs[src], probs[dst])
            keep = saliency_mask(saliency[dst], kl, self.keep_prob, gen)
            x_new = mix_features(x[src], x[dst], lam, keep)
            share = torch.sigmoid(kl)  # softmax([0, -KL])[0]: the source's share of the neighbours
            pairs = {r.rel: sample_neighbours(r, src, dst, share, gen) for r in self.relations}
        edges: Dict[EdgeType, List[torch.Tensor]] = {}
        for relation in self.relations:
            owner, nbr = pairs[relation.rel]
            new = owner + self.num_nodes
            edges.setdefault(relation.rel, []).append(torch.stack([nbr, new]))
            if relation.reverse is not None and self.both_ways:
                edges.setdefault(relation.reverse, []).append(torch.stack([new, nbr]))
        aug = append_nodes(data, [nt], nt, x_new.detach(), {rel: torch.cat(parts, 1) for rel, parts in edges.items()},
                           self.train_labels[rows_src])
        # the appended features are a fresh tensor: a leaf whose gradient the next step reads
        self.leaf = aug.data[nt].x.requires_grad_(True)
        if self.train_pred:
            aug.on_encoded = lambda h: self.keep_training_logits(h, aug.real_rows)
        return aug
