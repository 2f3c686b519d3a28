"""``bat`` -- BAlanced Topological augmentation (Liu et al., "Class-Imbalanced Graph Learning
without Class Rebalancing", ICML 2024), following the authors' code (github.com/ZhiningLiu1998/BAT:
``bat.py`` ``BatAugmenter``, ``trainer.py`` ``NodeClassificationTrainer.model_update``).

Every training step (``augment`` hook), before the encoder runs, the model's current predictions
on the original graph (an eval-mode, no-grad pass, softmax ``p``) decide which nodes are linked to
one *virtual node per class*:

* predicted classes ``yhat = argmax p``, with training nodes set to their true labels;
* uncertainty ``u_i = 1 - max_c p_ic``;
* risk ``r_i = max(u_i - mean_{j: yhat_j = yhat_i} u_j, 0) * n_{yhat_i} / n_max`` -- the
  uncertainty above the mean of the node's predicted class, scaled by that class's training
  count over the largest (nodes predicted as a majority class are the likely errors);
* posterior ``q_i``: ``bat0`` (0th order) the prediction ``p_i``; ``bat1`` (1st order, the code's
  default, "recommended") the distribution of the predicted classes of ``i``'s neighbours;
  ``q_i[yhat_i] = 0``, then the row is renormalised (an all-zero row stays zero);
* link probability ``P_ic = r_i * q_ic``; each (node, class) pair is drawn independently
  (Bernoulli ``P_ic``) and a drawn pair becomes an undirected edge between ``i`` and the virtual
  node of class ``c``.

The virtual node of class ``c`` has the mean input features of the nodes with ``yhat = c``, and,
as in the code (``adapt_labels_and_train_mask``), it is a labelled training node of class ``c``:
the loss sees the step's training rows, then the ``C`` virtual nodes' rows with their classes
(``bat_virtual_labels=false`` keeps them unlabelled: message passing only). So ``bat`` composes
with any loss remedy (``bat+balanced-softmax``; ``bat+tam``: ``tam`` gives the virtual rows no
margin; ``bat+graphens``: the labelled virtual rows are among the rows it balances and mixes) --
the paper presents BAT as orthogonal to class-rebalancing methods and combines it with them. Evaluation (and ``--scheduler plateau``'s validation loss) uses the original graph, as in
the code (``model_eval`` and the validation pass in ``model_update`` run on ``data.x,
data.edge_index``): the virtual nodes exist only while training.

Heterogeneous graphs: the virtual nodes are appended to the target node type, so it needs input
features (a featureless type -- Freebase's ``movie``, a learned embedding table sized to the real
nodes -- is refused with one line). ``bat1``'s neighbours are those along every relation whose two
ends are the target type, merged, made undirected and deduplicated (ACM: paper-cite-paper and
paper-ref-paper; Cora's one relation is already symmetric, so this is its ``edge_index`` as the
code uses it). Virtual edges go into every such relation, in both directions (each relation-aware
backbone -- ``rgcn``, ``gat``, ``simple-hgn`` -- passes the virtual node's message along each).
A graph without a target-to-target relation has nowhere to put a virtual edge and is refused;
so is a task with several target node types.

Deviations from the authors' code:

* random draws: one Bernoulli draw per (node, class) pair from the run's generator (seeded by
  ``--seed``), instead of ``torch.rand_like`` over the non-zero pairs after
  ``seed_everything(random_state + epoch)``; the probabilities are the same;
* epochs count from 0 here: augmentation runs from epoch ``bat_warmup`` on (the code: ``epoch >
  warmup_epoch`` with epochs from 1 and ``NodeClassificationTrainer``'s default ``warmup_epoch =
  0``, which ``train.py`` keeps: every epoch, as here);
* a class without training nodes gets no virtual node, risk weight 0 for nodes predicted as it,
  and link probabilities towards it are dropped after the renormalisation (the code indexes its
  class weights by predicted class and assumes every class has training nodes);
* ``bat1`` on heterogeneous graphs: the neighbourhood is the deduplicated undirected union of the
  target-to-target relations (the code takes one homogeneous ``edge_index`` as given, duplicate
  edges counted twice); virtual edges are added to each of those relations;
* the code's ``dummy`` mode is ``--remedy none`` here; ``bat_virtual_labels`` is an hgimb
  option (the code always labels the virtual nodes, which is the default);
* with a prior-shift loss (``bat+balanced-softmax``, ``bat+tam``) the labelled virtual nodes
  count in the loss's class prior (one more item per class with training nodes,
  ``RemedyContext.loss_priors``), as every row the loss sees does in hgimb.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch_geometric.utils import to_undirected

from ..errors import HgimbError
from ..params import Param, Range
from .base import BatchContext, GraphAugmentation, Remedy, RemedyContext
from .graph_augment import append_nodes, node_features
from .graph_remedies import full_graph_logits
from .registry import register_remedy

BAT_MODES = ("bat0", "bat1")
EdgeType = Tuple[str, str, str]


# ---------------------------------------------------------------------------------- the equations
def node_risk(probs: torch.Tensor, pred: torch.Tensor, class_weight: torch.Tensor) -> torch.Tensor:
    """``r_i = max(u_i - mean_{yhat_j = yhat_i} u_j, 0) * class_weight[yhat_i]`` with
    ``u = 1 - max p`` (the code's ``get_node_risk``; ``class_weight`` = training counts / max)."""
    num_classes = probs.size(1)
    unc = 1.0 - probs.max(dim=1).values
    total = torch.zeros(num_classes, dtype=unc.dtype, device=unc.device).index_add_(0, pred, unc)
    count = torch.bincount(pred, minlength=num_classes).to(unc.dtype)
    mean = total / count.clamp_min(1)
    return (unc - mean[pred]).clamp_min(0) * class_weight.to(unc)[pred]


def neighbour_class_distribution(pred: torch.Tensor, edge_index: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Row ``i``: the fraction of ``i``'s neighbours (``edge_index[0] == i``) predicted as each
    class; zero rows for nodes without neighbours (the code's ``get_connectivity_distribution_sparse``)."""
    counts = torch.zeros(pred.numel(), num_classes, device=pred.device)
    counts.index_put_((edge_index[0], pred[edge_index[1]]), torch.ones(edge_index.size(1), device=pred.device),
                      accumulate=True)
    return (counts / counts.sum(1, keepdim=True)).nan_to_num(0.0)


def link_probabilities(posterior: torch.Tensor, pred: torch.Tensor, risk: torch.Tensor) -> torch.Tensor:
    """``P_ic = r_i * q_ic`` with ``q`` the posterior without the predicted class, renormalised
    (the code's ``get_virual_link_proba`` times the node risk)."""
    q = (posterior * (1.0 - F.one_hot(pred, posterior.size(1)).to(posterior))).clamp_min(0)
    q = (q / q.sum(1, keepdim=True)).nan_to_num(0.0)
    return q * risk.unsqueeze(1)


def class_mean_features(x: torch.Tensor, pred: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Row ``j``: the mean of ``x`` over the nodes predicted as ``classes[j]`` (``get_virtual_node_features``).
    Every class in ``classes`` has training nodes, which are predicted as their true class, so no
    mean is empty."""
    num_classes = int(max(int(pred.max()), int(classes.max()))) + 1
    total = torch.zeros(num_classes, x.size(1), dtype=x.dtype, device=x.device).index_add_(0, pred, x)
    count = torch.bincount(pred, minlength=num_classes).to(x.dtype)
    return total[classes] / count[classes].clamp_min(1).unsqueeze(1)


def bat_plan(probs: torch.Tensor, train_nodes: torch.Tensor, train_labels: torch.Tensor,
             class_counts: torch.Tensor, mode: str, edge_index: Optional[torch.Tensor]
             ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(pred, risk, P)`` for predictions ``probs [n, C]``: predicted classes (training nodes
    set to their labels), node risk ``[n]`` and link probabilities ``[n, C]`` to each class's
    virtual node (zero towards classes without training nodes)."""
    pred = probs.argmax(1)
    pred[train_nodes] = train_labels
    counts = class_counts.to(probs)
    risk = node_risk(probs, pred, counts / counts.max())
    posterior = probs if mode == "bat0" else neighbour_class_distribution(pred, edge_index, probs.size(1))
    proba = link_probabilities(posterior, pred, risk)
    return pred, risk, proba * (counts > 0).to(proba)


# ---------------------------------------------------------------------------------- the remedy
@register_remedy
class BAT(Remedy):
    """BAT: risky nodes linked to per-class virtual nodes from the model's predictions, each training step (Liu et al. ICML 2024)."""

    name = "bat"
    spec = (Param("bat_mode", str, "bat1", "posterior: bat0 = the node's prediction, bat1 = its neighbours' "
                  "predicted classes (the code's default)", choices=BAT_MODES),
            Param("bat_warmup", int, 0, "epochs without augmentation (the code's warmup_epoch: 0)", Range(0)),
            Param("bat_virtual_labels", bool, True, "virtual nodes are labelled training nodes of their class "
                  "(the code: yes)"))

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.mode, self.warmup = self.p["bat_mode"], self.p["bat_warmup"]
        self.virtual_labels = self.p["bat_virtual_labels"]
        self.model: Optional[torch.nn.Module] = None
        self.last: Optional[dict] = None  # the latest step's pred / risk / link probabilities / edges

    def check(self, ctx: RemedyContext) -> None:
        if ctx.kind != "node" or ctx.task is None or ctx.task.data is None:
            raise HgimbError("remedy 'bat' augments the graph of a node task (virtual class nodes linked to "
                             f"nodes); this is a {ctx.kind} task: use balanced-softmax or smote instead")
        task = ctx.task
        if len(task.target_types) != 1:
            raise HgimbError(f"remedy 'bat' adds virtual nodes to one target node type; '{task.name}' has "
                             f"{len(task.target_types)} ({', '.join(task.target_types)})")
        node_type = task.target_types[0]
        node_features(task.data, node_type, "bat")
        if not self.relations(task.data, node_type):
            raise HgimbError(f"remedy 'bat' links '{node_type}' nodes to virtual '{node_type}' nodes along a "
                             f"'{node_type}'-to-'{node_type}' relation; '{task.name}' has none")

    @staticmethod
    def relations(data, node_type: str) -> List[EdgeType]:
        """The relations virtual edges go into (and ``bat1``'s neighbourhood comes from)."""
        return [rel for rel in data.edge_types if rel[0] == node_type and rel[2] == node_type]

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        task = ctx.task
        self.node_type = task.target_types[0]
        self.rels = self.relations(task.data, self.node_type)
        self.n = int(task.data[self.node_type].num_nodes)
        self.device = ctx.device
        self.train_nodes = ctx.train_index.to(self.device)
        self.train_labels = ctx.train_labels.to(self.device)
        self.class_counts = ctx.train_class_counts.to(self.device)
        self.classes = torch.nonzero(self.class_counts > 0).flatten()  # one virtual node each
        merged = torch.cat([task.data[rel].edge_index.cpu().long() for rel in self.rels], 1)
        self.neighbours = to_undirected(merged, num_nodes=self.n).to(self.device)

    def init_model(self, model: torch.nn.Module) -> None:
        self.model = model

    def loss_class_counts(self, counts: torch.Tensor) -> Optional[torch.Tensor]:
        """One labelled virtual node per class with training nodes joins the loss's rows."""
        if not self.virtual_labels:
            return None
        return counts + (counts > 0).double()

    @torch.no_grad()
    def predict(self, data) -> torch.Tensor:
        """Class probabilities of the target nodes from an eval-mode pass on the original graph."""
        return torch.softmax(full_graph_logits(self.model, data, self.n, self.name), dim=1)

    def augment(self, data, step: BatchContext, rng: torch.Generator) -> Optional[GraphAugmentation]:
        if step.epoch < self.warmup:
            return None
        if self.model is None:
            raise HgimbError("remedy 'bat' needs the model (init_model); run it through the trainer")
        probs = self.predict(data)
        pred, risk, proba = bat_plan(probs, self.train_nodes, self.train_labels, self.class_counts, self.mode,
                                     self.neighbours)
        proba = proba[:, self.classes]  # [n, k]: column j is the virtual node of classes[j]
        draw = torch.rand(proba.shape, generator=rng, device=rng.device).to(proba.device)
        node, virtual = torch.nonzero(draw < proba, as_tuple=True)
        virtual = virtual + self.n
        links = torch.cat([torch.stack([virtual, node]), torch.stack([node, virtual])], 1)
        x = node_features(data, self.node_type, self.name)
        x_virtual = class_mean_features(x.float(), pred.to(x.device), self.classes.to(x.device))
        self.last = {"pred": pred, "risk": risk, "proba": proba, "links": links}
        targets = self.classes.clone() if self.virtual_labels else None
        return append_nodes(data, [self.node_type], self.node_type, x_virtual, {rel: links for rel in self.rels},
                            targets)
