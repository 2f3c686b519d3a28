"""Graph-specific remedies for class-imbalanced node classification: ``tam`` and ``graphens``.

``tam`` -- Topology-Aware Margin (Song, Park & Yang, ICML 2022), following the authors' code
(github.com/Jaeyun-Song/TAM, ``models/tam.py``). Each labelled training node ``i`` of class
``y`` gets per-class logit margins from its neighbour-label distribution (NLD): the mean, over
``i`` and its neighbours, of one-hot training labels and, for unlabelled nodes, the model's
current class probabilities (softmax with a class-wise temperature). With ``C[y]`` the mean NLD
of the training nodes of class ``y`` (the class-wise connectivity):

* ACM (anomalous connectivity margin): ``log min(1, (nld_iy / C_yy) * (C_yc / nld_ic))`` (<= 0) is
  added to logit ``c != y`` -- a node connected to class ``c`` more (relative to its own class)
  than its class usually is gets a lower logit ``c``, i.e. a smaller margin against ``c``;
* ADM (anomalous distribution-aware margin): ``-(d(i,y)^2 + D(y,c)^2 - d(i,c)^2) / (2 D(y,c)^2)``
  is added to logit ``c != y``, with ``d(i,c)`` the Jensen-Shannon divergence between ``i``'s NLD
  and ``C[c]`` and ``D`` the same between class rows. The fraction is where ``i``'s NLD projects
  on the line from its own class's mean NLD (0) to class ``c``'s (1), by the law of cosines: a
  node whose neighbourhood looks like class ``c``'s gets a lower logit ``c`` (a smaller margin),
  a node typical of its own class (projection <= 0) a higher one (a larger margin).

``tam_alpha`` weighs ACM and ``tam_beta`` ADM, as in the paper and its code.

The adjusted logits ``z + tam_alpha * ACM + tam_beta * ADM`` go into the base loss (``base``:
``ce`` or ``balanced-softmax``; ``tam`` with ``base=balanced-softmax`` is the paper's "BS + TAM").
Class weights from ``weighted``/``drw`` reach the base loss as with every loss remedy. The
margins are zero for the true class, zero when every neighbourhood looks like its class's average
(e.g. label-consistent neighbourhoods), and with ``tam_alpha = tam_beta = 0`` the loss is the base
loss exactly. Defaults are the authors' (``tam_alpha`` 2.5, ``tam_beta`` 0.5, class-wise
temperature ``tam_temperature`` = their ``temp_phi`` 1.2 with their fixed ``temp_gamma`` 0.4,
``tam_warmup`` 5 epochs without margins). Differences from the reference code, all small:

* the unlabelled nodes' predictions come from a no-grad forward pass in eval mode at the start of
  each epoch (the code reuses the dropout-perturbed training forward pass);
* epochs count from 0 here, so margins start at epoch ``tam_warmup`` (the code: ``epoch > warmup``
  with epochs from 1 -- the same 6th epoch);
* the ``batch`` hook tells ``tam`` which training node each loss row is (repeats allowed), so it
  composes with any sampler (``tam+balanced-sampler``) and with mini-batches (``--batch-size``:
  the margins still come from one full-graph eval pass per epoch, on the first step of the
  epoch). Rows the ``synthesize`` hook appends (``graphens+tam``) get no margin: they have no
  neighbourhood (the code gives GraphENS's synthetic nodes sampled edges).

Neighbourhoods on heterogeneous graphs: the union of every relation whose both ends are target
(labelled) node types, made undirected, deduplicated, plus a self-loop -- as PyG's mean
aggregation with self-loops on a homogeneous graph such as Cora. Without any such relation,
target -> X -> target two-hop paths through every other node type X are used: the NLD is the
mean over all two-hop paths (counted with multiplicity, paths back to the node itself replaced by
one self-loop), computed with two scatter-adds per X (never materialising the two-hop graph).
Graph (crystal) tasks have no neighbourhood between items and are refused.

``graphens`` -- GraphENS-style minority synthesis (Park, Song & Yang, ICLR 2022, following
github.com/JoonHyung-Park/GraphENS ``models/gens.py``) in embedding space: each class gets
``n_max - n_c`` synthetic nodes (the code's balancing rule); a synthetic node mixes a source node
drawn uniformly from the minority class with a target node drawn from all training nodes with
probability proportional to ``log(n_c) / n_c`` of its class (the code's sampling), as
``lam * h_src + (1 - lam) * h_dst`` with ``lam ~ Beta(ens_alpha, ens_alpha)`` (the code: Beta(2, 2)),
and keeps the *source's* hard label. How it differs from the paper: GraphENS builds a synthetic
ego network -- input features mixed by ``lam`` except a ``keep_prob`` share of them, drawn by
the target's saliency and taken from the source, and neighbours sampled from a mixture of the two nodes'
neighbour distributions whose source share ``sigmoid(KL)`` grows with the prediction divergence of
the pair -- and runs it through the GNN. Here the encoder has already aggregated each node's ego
network into ``h``, so mixing the two embeddings with one ``lam`` stands in for mixing both
the ego features and the neighbourhoods; there is no saliency mask and no KL-adaptive neighbour
ratio. As in GraphENS, synthetic nodes do not change the embeddings of real nodes, and gradients
flow through both mixed embeddings into the encoder. Its ``synthesize`` composes with any loss
remedy (``graphens+balanced-softmax``, ``graphens+tam``); it works on graph tasks too (a mixup of
graph embeddings), though the method is meant for nodes.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from ..errors import HgimbError
from ..params import Param, Range
from .base import BatchContext, Remedy, RemedyContext, cross_entropy
from .losses import log_prior, prior_adjusted_ce
from .registry import register_remedy
from .samplers import draw_seed

TAM_BASES = ("ce", "balanced-softmax")
TEMP_GAMMA = 0.4  # the authors' code fixes temp_gamma = 0.4 (adjust_output in models/tam.py)


# ---------------------------------------------------------------------------------- neighbourhoods
@torch.no_grad()
def full_graph_logits(model: torch.nn.Module, data, rows: int, remedy: str) -> torch.Tensor:
    """The model's logits for every item from an eval-mode pass over the whole graph (float32), its
    training mode restored after; a one-line error when the model does not score ``rows`` items.
    What ``tam``, ``bat`` and ``graphens-ego`` read the current predictions from."""
    was_training = model.training
    model.eval()
    try:
        logits = model(data).float()
    finally:
        model.train(was_training)
    if logits.size(0) != rows:
        raise HgimbError(f"remedy '{remedy}': the model's full-graph pass returned {logits.size(0)} rows for "
                         f"{rows} items; {remedy} needs a model that scores the whole graph")
    return logits


class NeighbourMean:
    """Mean of a per-item quantity over each item's neighbourhood plus itself (see the module
    docstring): ``agg(P)[i] = (P[i] + sum_{paths i~j} P[j]) / (1 + #paths of i)``.

    Edge lists and ``index_add_`` (not torch.sparse, whose COO checks warn): one scatter per
    direction and intermediate type; vectorised over edges."""

    def __init__(self, task):
        if task.kind != "node" or task.data is None:
            raise HgimbError(f"remedy 'tam' needs a node task with a graph; '{task.name}' is a {task.kind} task")
        offsets = task.type_offsets()
        targets = set(task.target_types)
        self.n = n = task.num_items
        direct: List[torch.Tensor] = []
        via: Dict[str, List[torch.Tensor]] = {}
        for edge_type in task.data.edge_types:
            src, _, dst = edge_type
            ei = task.data[edge_type].edge_index.cpu().long()
            if src in targets and dst in targets:
                direct.append(torch.stack([ei[0] + offsets[src], ei[1] + offsets[dst]]))
            elif src in targets:
                via.setdefault(dst, []).append(torch.stack([ei[0] + offsets[src], ei[1]]))
            elif dst in targets:
                via.setdefault(src, []).append(torch.stack([ei[1] + offsets[dst], ei[0]]))
        self.mode = "direct" if direct else "two-hop" if via else ""
        if not self.mode:
            raise HgimbError(f"remedy 'tam': dataset '{task.name}' has no relation that touches the target node "
                             f"type(s) {sorted(targets)}, so nodes have no neighbourhood; drop 'tam'")
        # direct: [(item, item)] both directions; two-hop: [(item, other node, number of other nodes)]
        self.links: List[Tuple[torch.Tensor, int]] = []
        if direct:
            # undirected and deduplicated (relations merged into one 0/1 adjacency), as the GCN/SAGE
            # baselines treat the graph; self-loops are added once in __call__
            ei = remove_self_loops(to_undirected(torch.cat(direct, 1), num_nodes=n))[0]
            self.links.append((ei, n))
        else:
            for other, parts in sorted(via.items()):
                size = int(task.data[other].num_nodes)
                # (item, other node) pairs, deduplicated and sorted by item
                self.links.append((coalesce(torch.cat(parts, 1), num_nodes=max(n, size)), size))
        ones = torch.ones(n, 1)
        self.count = self._paths(ones)  # [n, 1]: neighbours (direct) or two-hop paths incl. back to self
        self.self_paths = torch.zeros(n, 1)
        if self.mode == "two-hop":  # i -> x -> i once per x adjacent to i: its degree over all X
            for pairs, _ in self.links:
                self.self_paths.index_add_(0, pairs[0], torch.ones(pairs.size(1), 1))

    def _paths(self, values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.n, values.size(1), dtype=values.dtype, device=values.device)
        for pairs, size in self.links:
            if self.mode == "direct":
                out.index_add_(0, pairs[0], values[pairs[1]])
            else:
                mid = torch.zeros(size, values.size(1), dtype=values.dtype, device=values.device)
                mid.index_add_(0, pairs[1], values[pairs[0]])
                out.index_add_(0, pairs[0], mid[pairs[1]])
        return out

    def to(self, device) -> "NeighbourMean":
        self.links = [(pairs.to(device), size) for pairs, size in self.links]
        self.count, self.self_paths = self.count.to(device), self.self_paths.to(device)
        return self

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        summed = values + self._paths(values) - self.self_paths * values
        return summed / (1.0 + self.count - self.self_paths)


# ---------------------------------------------------------------------------------- TAM
def class_temperature(counts: torch.Tensor, phi: float, gamma: float = TEMP_GAMMA) -> torch.Tensor:
    """The authors' class-wise temperature ``phi * (r_c + 1 - max r)``, ``r = gamma * n_c/n + 1 - gamma``;
    probabilities are ``softmax(logits * temperature)``."""
    ratio = counts.double() / counts.sum().double() * gamma + (1.0 - gamma)
    return (phi * (ratio + 1.0 - ratio.max())).float()


def jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Element-wise Jensen-Shannon terms (sum over the last dim for the divergence), as the
    authors' ``compute_jsd``."""
    mean = (p + q) / 2.0
    return (F.kl_div(mean.log(), p, reduction="none") + F.kl_div(mean.log(), q, reduction="none")) / 2.0


def tam_margins(neighbour_dist: torch.Tensor, labels: torch.Tensor, num_classes: int
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(log ACM, -ADM)`` for labelled nodes with neighbour-label distributions ``[n, C]`` and
    classes ``[n]``; both ``[n, C]``, zero at each node's own class (``compute_tam`` vectorised)."""
    nd = neighbour_dist.clone()
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(nd.dtype)
    conn = torch.zeros(num_classes, num_classes, dtype=nd.dtype, device=nd.device).index_add_(0, labels, nd)
    conn = conn / counts.unsqueeze(1)  # class-wise connectivity: mean NLD of each class's nodes
    own = F.one_hot(labels, num_classes).bool()
    nd, conn = nd.clamp_min(1e-6), conn.clamp_min(1e-6)  # the code clamps after the class means
    acm = (nd.gather(1, labels.unsqueeze(1)) / conn.diagonal()[labels].unsqueeze(1)) * (conn[labels] / nd)
    acm = acm.clamp(max=1.0).masked_fill(own, 1.0)
    pair = jsd(conn.unsqueeze(0), conn.unsqueeze(1)).sum(-1).clamp_min(1e-6) ** 2  # [C, C]
    to_own = jsd(nd, conn[labels]).sum(-1, keepdim=True)
    to_each = jsd(nd.unsqueeze(1), conn.unsqueeze(0)).sum(-1)  # [n, C]
    adm = (to_own ** 2 + pair[labels] - to_each ** 2) / (2.0 * pair[labels])
    adm = adm.masked_fill(own, 0.0)
    return acm.log(), -adm


@register_remedy
class TAM(Remedy):
    """Topology-aware margins (ACM + ADM from neighbour-label distributions) on a CE or balanced-softmax base (Song et al. ICML 2022)."""

    name = "tam"
    # tam_ prefixes: 'weighted' already has 'beta' and focal 'alpha', and parameters go to every
    # part of a composition that declares them
    spec = (Param("tam_alpha", float, 2.5, "weight of ACM (paper: 2.5)", Range(0)),
            Param("tam_beta", float, 0.5, "weight of ADM (paper: 0.5)", Range(0)),
            Param("tam_temperature", float, 1.2, "class-wise temperature phi (paper's temp_phi: 1.2)",
                  Range(0, low_open=True)),
            Param("tam_warmup", int, 5, "epochs without margins", Range(0)),
            Param("base", str, "balanced-softmax", "base loss", choices=TAM_BASES))

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.alpha, self.beta, self.phi = self.p["tam_alpha"], self.p["tam_beta"], self.p["tam_temperature"]
        self.warmup, self.base = self.p["tam_warmup"], self.p["base"]
        self.model: Optional[torch.nn.Module] = None
        self.margins: Optional[torch.Tensor] = None  # [n_train, C] for this epoch, None = no margin
        self.margin_epoch: Optional[int] = None  # the epoch the margins were computed for
        self.rows: Optional[torch.Tensor] = None  # this step's loss rows -> positions in train_nodes

    def check(self, ctx: RemedyContext) -> None:
        if ctx.kind != "node":
            raise HgimbError("remedy 'tam' needs a node task (margins come from each node's neighbours); "
                             f"this is a {ctx.kind} task: use balanced-softmax or ldam instead")
        if ctx.task is None:
            raise HgimbError("remedy 'tam' needs the task's graph (RemedyContext.task); run it through the trainer")

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        task = ctx.task
        self.device = ctx.device
        self.data = task.data.to(self.device)  # PyG moves in place: the trainer's copy is this one
        self.aggregate = NeighbourMean(task).to(self.device)
        self.num_items = task.num_items
        self.train_nodes = ctx.train_index.to(self.device)
        self.train_labels = ctx.train_labels.to(self.device)
        self.position = torch.full((self.num_items,), -1, dtype=torch.long, device=self.device)
        self.position[self.train_nodes] = torch.arange(self.train_nodes.numel(), device=self.device)
        self.temperature = class_temperature(ctx.train_class_counts, self.phi).to(self.device)

    def init_model(self, model: torch.nn.Module) -> None:
        self.model = model

    @torch.no_grad()
    def compute_margins(self) -> torch.Tensor:
        """ACM/ADM-adjusted logit offsets ``[n_train, C]`` from the model's current predictions."""
        logits = full_graph_logits(self.model, self.data, self.num_items, self.name)
        probs = torch.softmax(logits * self.temperature, dim=1)
        probs[self.train_nodes] = F.one_hot(self.train_labels, self.ctx.num_classes).float()
        neighbour_dist = self.aggregate(probs)[self.train_nodes]
        acm, adm = tam_margins(neighbour_dist, self.train_labels, self.ctx.num_classes)
        return self.alpha * acm + self.beta * adm

    def batch(self, step: BatchContext) -> None:
        items, epoch = step.items, step.epoch
        if epoch != self.margin_epoch:  # the first step of an epoch: margins from the current model
            active = epoch >= self.warmup and (self.alpha > 0 or self.beta > 0)
            self.margins = self.compute_margins() if active else None
            self.margin_epoch = epoch
        rows = self.position[items.to(self.position.device)]
        if bool((rows < 0).any()):
            bad = int(items[(rows < 0).nonzero()[0]].item())
            raise HgimbError(f"remedy 'tam' got item {bad}, which is not a training node; its margins exist "
                             "for training nodes only")
        self.rows = rows

    def adjusted(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits plus this epoch's margins on the rows of real training nodes (the ids the
        ``batch`` hook gave); rows beyond them (synthetic nodes) are left as they are."""
        if self.margins is None:
            return logits
        n = self.rows.numel()
        if logits.size(0) < n:
            raise HgimbError(f"remedy 'tam' got {logits.size(0)} training rows for a batch of {n} items")
        margin = self.margins[self.rows].to(logits.device, logits.dtype)
        return torch.cat([logits[:n] + margin, logits[n:]])

    def loss(self, logits, target, epoch):
        weight = self.ctx.class_weight_at(epoch)
        weight = None if weight is None else weight.to(logits.device)
        logits = self.adjusted(logits)
        if self.base == "balanced-softmax":
            return prior_adjusted_ce(logits, target, log_prior(self.ctx), 1.0, weight)
        return cross_entropy(logits, target, weight)


# ---------------------------------------------------------------------------------- GraphENS
def graphens_added(counts: torch.Tensor) -> torch.Tensor:
    """How many synthetic nodes each class gets: ``n_max - n_c`` (none for an empty class)."""
    return torch.where(counts > 0, counts.max() - counts, torch.zeros_like(counts))


def graphens_pairs(labels: torch.Tensor, num_classes: int, rng: torch.Generator
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row indices ``(src, dst)`` of the synthetic nodes: ``n_max - n_c`` sources per class,
    uniform within the class; targets over all rows with probability ``log(n_c) / n_c``
    (GraphENS's ``sampling_idx_individual_dst``)."""
    counts = torch.bincount(labels, minlength=num_classes)
    n_add = graphens_added(counts)
    total = int(n_add.sum())
    if total == 0:
        empty = torch.empty(0, dtype=torch.long, device=labels.device)
        return empty, empty
    order = torch.argsort(labels, stable=True)  # rows grouped by class
    starts = torch.cumsum(counts, 0) - counts
    cls = torch.repeat_interleave(torch.arange(num_classes, device=labels.device), n_add)
    pick = (torch.rand(total, generator=rng, device=rng.device).to(labels.device) * counts[cls]).long()
    src = order[starts[cls] + pick.clamp(max=counts[cls] - 1)]
    per_class = torch.log(counts.double()) / counts.double().clamp_min(1)
    weight = per_class[labels].float()
    if float(weight.sum()) <= 0:  # every class a singleton: log(1) = 0 -> uniform targets
        weight = torch.ones_like(weight)
    dst = torch.multinomial(weight.to(rng.device), total, replacement=True, generator=rng).to(labels.device)
    return src, dst


@register_remedy
class GraphENS(Remedy):
    """GraphENS-style minority synthesis: minority embeddings mixed with sampled target nodes, source label kept (Park et al. ICLR 2022)."""

    name = "graphens"
    spec = (Param("ens_alpha", float, 2.0, "lam ~ Beta(ens_alpha, ens_alpha) (the GraphENS code: 2)",
                  Range(0, low_open=True)),)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.alpha = self.p["ens_alpha"]

    def loss_class_counts(self, counts: torch.Tensor) -> torch.Tensor:
        return counts + graphens_added(counts)

    def synthesize(self, h, y, rng):
        if y.dtype.is_floating_point:
            raise HgimbError("remedy 'graphens' needs hard labels; combine it with at most one synthesis remedy")
        src, dst = graphens_pairs(y, self.ctx.num_classes, rng)
        if src.numel() == 0:
            return None
        # torch's Beta sampler takes no Generator; a numpy generator seeded from it stays deterministic
        lam = np.random.default_rng(draw_seed(rng)).beta(self.alpha, self.alpha, size=(src.numel(), 1))
        lam = torch.as_tensor(lam, dtype=h.dtype, device=h.device)
        src_d, dst_d = src.to(h.device), dst.to(h.device)
        mixed = lam * h[src_d] + (1.0 - lam) * h[dst_d]
        return torch.cat([h, mixed]), torch.cat([y, y[src.to(y.device)]])
