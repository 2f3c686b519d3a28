"""``graphsmote`` -- GraphSMOTE with its edge generator (Zhao, Zhang & Wang, WSDM 2021,
"GraphSMOTE: Imbalanced Node Classification on Graphs with Graph Neural Networks", arXiv
2103.08826), following the authors' code (github.com/TianxiangZhao/GraphSmote: ``main.py``,
``models.py``, ``utils.py``; the ``recon_newG`` setting with a thresholded generated graph).

Every training step (full graph), through the ``hidden`` field of the ``augment`` hook (the
synthetic nodes are made inside the model, before its output convolution):

* encoder: the backbone up to its output convolution gives ``H`` for every node;
* synthetic nodes (``utils.recon_upsample``): the sampling plan (``sampling_strategy``, as
  ``smote``) says how many per class; base nodes are drawn uniformly from the class's training
  nodes of the step; each is paired with its nearest training node of the same class in ``H``
  (Euclidean, on detached ``H``) and ``h_new = h_v + lam * (h_nn - h_v)``, ``lam ~ U(0, 1)``;
* edge generator (``models.Decoder``): ``p(u, v) = sigmoid(z_u . z_v)`` with ``z = H W^T``. A
  synthetic node's candidate neighbours are the union of its two parents' neighbours (the code's
  ``adj_up = clamp(adj[v] + adj[nn])``); it keeps those with ``p >= edge_threshold`` (0.5, the
  code's threshold when the generated graph is not optimised through, ``opt_new_G`` off);
* classifier: the output convolution aggregates each synthetic node's own row and its kept
  neighbours' (the model's ``encode_extended``), then the head; the synthetic labels join the loss
  after the real training rows, so a loss remedy composes (``graphsmote+balanced-softmax``,
  ``graphsmote+tam``);
* the generator learns at every step from the real graph: the code's ``adj_mse_loss``, a sum over
  ordered node pairs of ``w (p - A)^2`` with ``w = 1`` on edges and ``|E| / (N^2 - |E|)`` on
  non-edges, then one Adam step (``edge_lr``, weight decay 5e-4: the code's ``optimizer_de``).

Deviations from the code:

1. The generator trains on detached ``H`` with its own optimiser; the code also adds
   ``rec_weight`` (1e-6) times its loss to the encoder's loss (a 1e-6-scaled gradient).
2. The non-edge term is estimated from as many uniformly drawn non-edge pairs as there are edges
   (each weighted to keep the estimate of the code's sum unbiased) instead of the dense
   ``N x N`` matrix, so the remedy scales past Cora.
3. Real nodes receive no messages from synthetic ones: the code's generated adjacency is
   symmetric, so a real node also aggregates its synthetic neighbours (and its GCN degree grows);
   here the real nodes' outputs are the model's own.
4. The partner is the nearest same-class training node, as the paper describes; the code indexes
   the whole graph with the partner's position inside the class (``embed[idx_neighbor, :]``).
5. ``lam`` is drawn per synthetic node (SMOTE); the code draws one per class and step.
6. How many: ``sampling_strategy`` (default ``auto``: every class up to the largest, like
   ``smote``); the code's ``up_scale = 1`` adds one synthetic node per training node of the last
   ``im_class_num`` classes (Cora step rho = 10, 20 vs 2 training nodes: ``auto`` adds 18 per
   minority class, ``up_scale = 1`` adds 2).
7. No generator pretraining (the paper's GraphSMOTE_preT variants); it trains from the first step.
8. Backbone: the reference-style ``gcn``, ``sage`` and ``gatconv`` (``--model-option
   style=reference``): encoder = all but the output convolution, classifier = the output
   convolution; the code's SAGE classifier is a SAGE layer followed by a linear layer.

Heterogeneous graphs (the paper and its code have one node type; this extension is hgimb's): the
backbones ``rgcn``, ``gat`` and ``simple-hgn`` (encoder = all but the last layer, classifier = the
last layer and what follows it; each model's ``encode_extended``). The synthetic nodes are of the
target type (one target type), interpolated in that type's hidden space; the relation-aware
choices:

* which relations: every relation the last layer aggregates into the target type (a synthetic
  movie gets actors, directors, ... along each relation that ends at movies; it sends no messages,
  so relations leaving the target type play no part);
* candidates per relation: the union of the two parents' in-neighbours *in that relation*;
* one edge generator per relation, ``p_r(u, v) = sigmoid((h_u W_r^T) . (h_v W_r^T))`` with ``h_u``
  the source type's hidden row, trained on that relation's edges (non-edges drawn uniformly from
  source x target pairs), all generators stepped by one Adam optimiser on the sum of their losses;
* the kept edges enter the last layer as that relation's edges (``rgcn``: unweighted mean even
  where the relation has ``edge_weight``; ``gat``: the relation's ``GATConv``; ``simple-hgn``: the
  relation's edge-type embedding).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np
import torch

from ..errors import HgimbError
from ..params import Param, Range
from .base import BatchContext, GraphAugmentation, HiddenGraph, HiddenNodes, Remedy, RemedyContext
from .registry import register_remedy
from .samplers import SAMPLING_STRATEGY, parse_sampling_strategy, planned_counts, resolve_sampling_strategy

DECODER_WEIGHT_DECAY = 5e-4  # the code's --weight_decay default, used for optimizer_de too


@dataclass
class SortedEdges:
    """A relation's edges ``[2, E]`` (source ids in ``0..num_src-1`` -> target ids in
    ``0..num_nodes-1``; one node type: ``num_src = num_nodes``) sorted once for the per-step
    lookups: the in-neighbours by destination (CSR ``ptr`` / ``neighbours``, for
    :func:`candidate_edges`) and the sorted pair keys ``src * num_nodes + dst`` (for
    :func:`reconstruction_loss`). The model hands GraphSMOTE its edges every step; :meth:`reuse`
    keeps this when they are the same edges, so the two sorts (about 180 ms a step at a million
    edges on one thread) run once per run."""

    edges: torch.Tensor
    num_nodes: int
    num_src: int
    ptr: torch.Tensor
    neighbours: torch.Tensor
    keys: torch.Tensor

    @classmethod
    def of(cls, edges: torch.Tensor, num_nodes: int, num_src: Optional[int] = None) -> "SortedEdges":
        num_src = num_nodes if num_src is None else int(num_src)
        order = torch.argsort(edges[1], stable=True)
        ptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=edges.device)
        ptr[1:] = torch.cumsum(torch.bincount(edges[1], minlength=num_nodes), 0)
        keys = torch.sort(edges[0] * num_nodes + edges[1]).values
        return cls(edges, num_nodes, num_src, ptr, edges[0][order], keys)

    def reuse(self, edges: torch.Tensor, num_nodes: int, num_src: Optional[int] = None) -> "SortedEdges":
        """This one if ``edges`` are the same edges (content, not object), else a new one."""
        num_src = num_nodes if num_src is None else int(num_src)
        same = (num_nodes == self.num_nodes and num_src == self.num_src
                and (edges is self.edges or (edges.shape == self.edges.shape and edges.device == self.edges.device
                                             and torch.equal(edges, self.edges))))
        return self if same else SortedEdges.of(edges, num_nodes, num_src)


def candidate_edges(graph: SortedEdges, base: torch.Tensor, partner: torch.Tensor):
    """``(src, dst)``: for synthetic node ``k`` (``dst = k``), every distinct in-neighbour of
    ``base[k]`` or ``partner[k]`` in the relation, vectorised over the nodes."""
    ptr, num_src, device = graph.ptr, graph.num_src, graph.edges.device
    parents = torch.cat([base, partner])
    owner = torch.arange(base.numel(), device=device).repeat(2)
    counts = ptr[parents + 1] - ptr[parents]
    dst = torch.repeat_interleave(owner, counts)
    first = torch.repeat_interleave(ptr[parents], counts)
    within = torch.arange(int(counts.sum()), device=device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)
    src = graph.neighbours[first + within]
    key = torch.unique(dst * num_src + src)
    return key % num_src, key // num_src


class EdgeGenerator(torch.nn.Module):
    """The code's ``Decoder``: ``p(u, v) = sigmoid((h_u W^T) . (h_v W^T))``, ``W`` uniform in
    ``+-1/sqrt(d)``."""

    def __init__(self, dim: int, generator: torch.Generator):
        super().__init__()
        bound = 1.0 / dim ** 0.5
        self.weight = torch.nn.Parameter((torch.rand(dim, dim, generator=generator) * 2 - 1) * bound)

    def embed(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.weight.t()

    @staticmethod
    def prob(z_u: torch.Tensor, z_v: torch.Tensor) -> torch.Tensor:
        """Edge probabilities from embedded rows (``embed``), pair by pair."""
        return torch.sigmoid((z_u * z_v).sum(-1))


def reconstruction_loss(generator: EdgeGenerator, source: torch.Tensor, target: torch.Tensor, graph: SortedEdges,
                        rng: torch.Generator) -> torch.Tensor:
    """The code's ``adj_mse_loss`` over all ordered (source, target) pairs of one relation, its
    non-edge half estimated from ``|E|`` uniform non-edge pairs (deviation 2 of the module
    docstring). One node type: ``source`` and ``target`` are the same rows."""
    edges = graph.edges
    n_src, n, num_edges = source.size(0), target.size(0), edges.size(1)
    z_src = generator.embed(source)  # once per node, then gathered per pair
    z_dst = z_src if target is source else generator.embed(target)
    positive = generator.prob(z_src[edges[0]], z_dst[edges[1]])
    loss = ((positive - 1) ** 2).sum()
    non_edges = n_src * n - num_edges
    if num_edges == 0 or non_edges <= 0:
        return loss
    if n_src == n:  # both ends from one draw
        pairs = torch.randint(n, (2, num_edges), generator=rng, device=rng.device).to(target.device)
    else:
        pairs = torch.stack([torch.randint(n_src, (num_edges,), generator=rng, device=rng.device),
                             torch.randint(n, (num_edges,), generator=rng, device=rng.device)]).to(target.device)
    keys = graph.keys
    key = pairs[0] * n + pairs[1]
    found = torch.searchsorted(keys, key).clamp_max(keys.numel() - 1)
    keep = keys[found] != key
    negative = generator.prob(z_src[pairs[0][keep]], z_dst[pairs[1][keep]])
    # the kept draws are uniform over the non-edges: their sum ~ (draws kept / non_edges) times the
    # sum over all non-edges; with the code's weight |E| / non_edges that leaves |E| / draws kept
    weight = num_edges / max(int(keep.sum()), 1)
    return loss + weight * (negative ** 2).sum()


@register_remedy
class GraphSMOTE(Remedy):
    """GraphSMOTE: SMOTE in the encoder's space with a trained edge generator linking the synthetic nodes before the output convolution (Zhao et al. WSDM 2021)."""

    name = "graphsmote"
    spec = (SAMPLING_STRATEGY,
            Param("edge_threshold", float, 0.5, "keep a candidate edge when the generator's probability is at least "
                  "this (the code's threshold)", Range(0, 1)),
            Param("edge_lr", float, 0.001, "Adam learning rate of the edge generator (the code's --lr: 0.001)",
                  Range(0, low_open=True)))

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.generators: Dict[Any, EdgeGenerator] = {}  # one per relation into the target type
        self.graphs: Dict[Any, SortedEdges] = {}  # each relation's edges, sorted once
        self.optimizer: Optional[torch.optim.Optimizer] = None

    def check(self, ctx: RemedyContext) -> None:
        if ctx.kind != "node" or ctx.task is None or ctx.task.data is None:
            raise HgimbError("remedy 'graphsmote' links synthetic nodes into the graph and needs a node task")
        if len(ctx.task.target_types) != 1:
            raise HgimbError(f"remedy 'graphsmote' makes nodes of one target type; '{ctx.task.name}' classifies "
                             f"{', '.join(ctx.task.target_types)}")

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        self.strategy = parse_sampling_strategy(self.name, self.p["sampling_strategy"], "over-sampling",
                                                ctx.class_names)
        resolve_sampling_strategy(self.name, self.strategy, ctx.train_labels.cpu().numpy(), "over-sampling")
        self.labels = ctx.task.y.to(ctx.device)
        self.init_stream = torch.Generator().manual_seed(int(ctx.seed))  # the generator's initial weights

    def loss_class_counts(self, counts: torch.Tensor) -> torch.Tensor:
        return planned_counts(self.name, self.strategy, counts, "over-sampling")

    def init_model(self, model: torch.nn.Module) -> None:
        if not getattr(model, "extends_hidden", False):
            raise HgimbError(f"remedy 'graphsmote' inserts synthetic nodes before the model's output layer; "
                             f"model {type(model).__name__} cannot (rgcn, gat, simple-hgn, and gcn, sage and "
                             "gatconv with --model-option style=reference can)")

    def augment(self, data, step: BatchContext, rng) -> Optional[GraphAugmentation]:
        items = step.items
        labels = self.labels[items]
        plan = resolve_sampling_strategy(self.name, self.strategy, labels.cpu().numpy(), "over-sampling")
        bases, targets, members = [], [], {}
        for cls, n_add in sorted(plan.items()):  # a loop over classes; vectorised within a class
            if n_add <= 0:
                continue
            rows = torch.unique(items[labels == cls])
            members[cls] = rows
            pick = torch.randint(rows.numel(), (n_add,), generator=rng, device=rng.device).to(rows.device)
            bases.append(rows[pick])
            targets.append(torch.full((n_add,), cls, dtype=torch.long, device=rows.device))
        if not bases:
            return None
        base, target = torch.cat(bases), torch.cat(targets)
        lam = torch.rand(base.numel(), 1, generator=rng, device=rng.device)
        draw = torch.Generator(device=rng.device).manual_seed(int(torch.randint(0, 2**62, (1,), generator=rng)))

        def hidden(graph: HiddenGraph) -> HiddenNodes:
            h = graph.target
            partner = self._partners(h.detach(), base, target, members)
            new = h[base] + lam.to(h.device, h.dtype) * (h[partner] - h[base])
            if self.optimizer is None and graph.relations:  # one per relation, initialised in the model's order
                self.generators = {key: EdgeGenerator(h.size(1), self.init_stream).to(h.device)
                                   for key in graph.relations}
                self.optimizer = torch.optim.Adam([w for g in self.generators.values() for w in g.parameters()],
                                                  lr=self.p["edge_lr"], weight_decay=DECODER_WEIGHT_DECAY)
            kept, loss, rows = {}, None, h.detach()
            for key, relation in graph.relations.items():
                sorted_edges = self.graphs.get(key)
                sorted_edges = (SortedEdges.of(relation.edges, h.size(0), relation.source.size(0)) if sorted_edges is None
                                else sorted_edges.reuse(relation.edges, h.size(0), relation.source.size(0)))
                self.graphs[key] = sorted_edges
                generator = self.generators[key]
                src, dst = candidate_edges(sorted_edges, base, partner)
                with torch.no_grad():  # the generated graph is thresholded, not optimised through
                    z_src, z_new = generator.embed(relation.source[src].detach()), generator.embed(new.detach())
                    keep = generator.prob(z_src, z_new[dst]) >= self.p["edge_threshold"]
                kept[key] = (src[keep], dst[keep])
                source = rows if relation.source is h else relation.source.detach()
                with torch.enable_grad():
                    term = reconstruction_loss(generator, source, rows, sorted_edges, draw)
                loss = term if loss is None else loss + term
            if loss is not None:
                with torch.enable_grad():
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
            return HiddenNodes(new, kept)

        return GraphAugmentation(data=data, new_rows=torch.empty(0, dtype=torch.long), new_targets=target,
                                 hidden=hidden)

    @staticmethod
    def _partners(h: torch.Tensor, base: torch.Tensor, target: torch.Tensor, members: dict) -> torch.Tensor:
        """Each base node's nearest other training node of its class in ``h`` (itself when it is
        the class's only one)."""
        partner = base.clone()
        for cls, rows in members.items():
            if rows.numel() < 2:
                continue
            dist = torch.cdist(h[rows], h[rows])
            dist.fill_diagonal_(float("inf"))
            nearest = rows[dist.argmin(1)]
            mine = target == cls
            position = torch.searchsorted(rows, base[mine])  # rows are sorted (torch.unique)
            partner[mine] = nearest[position]
        return partner
