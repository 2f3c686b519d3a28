"""The Remedy interface and its composition (docs/architecture.md, "Remedy").

A remedy is a :class:`Remedy` subclass with a ``name``, its declared ``params`` (defaults;
``--remedy-param name=value`` overrides them) and any of the hooks below; the trainer calls them
through a :class:`ComposedRemedy` built from ``--remedy a+b+c`` (or from remedy objects given to
``Trainer``). Hooks that return ``None`` mean "not mine". At most one part may own each of
``loss``, ``train_index``, ``synthesize`` and ``values`` (two training losses make no sense together: that
is a clear error, not a silent pick); ``class_weight`` from a weighting remedy is handed to
whichever loss is in use; post-hoc ``adjust``/``apply`` chain in the order written. ``augment``
(input-level graph augmentation: synthetic nodes with features and edges, or extra edges and
virtual nodes, before the encoder runs) is exclusive as well.

What a remedy is told is typed: :class:`RemedyContext` once per run (class statistics from the
training split only, the task, the device), :class:`BatchContext` once per training step (the
item ids of the step's rows). A remedy talks back through the context's documented fields
(``class_weight``, ``class_weight_schedule``, ``min_epochs``); the engine never names a remedy.

The label prior the loss trains under (``RemedyContext.loss_priors``, which balanced softmax,
logit adjustment, TAM's balanced-softmax base, ``prior-bias`` and ``posthoc-logit-adjust`` use) is
the class distribution of the rows the loss sees, not of the training split: a remedy that
changes it (a sampler, a synthesis remedy) says how in ``loss_class_counts``. Without that,
``graphsha+balanced-softmax`` corrects twice: the synthetic nodes already balance the classes and
the log prior of the raw split (log 341/3 = 4.7 on Cora at rho = 100) pushes every prediction to
the rarest classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..errors import HgimbError

if TYPE_CHECKING:  # pragma: no cover
    from ..data.task import Task


@dataclass
class RemedyContext:
    """What a remedy knows about the run (``check``/``setup``), and what it may set for the rest."""

    num_classes: int
    train_index: torch.Tensor  # item indices of the labelled training items
    train_labels: torch.Tensor  # their classes (same order)
    kind: str = "node"  # "node" or "graph"
    epochs: int = 200
    seed: int = 0
    class_names: List[str] = field(default_factory=list)
    task: Optional["Task"] = None  # the whole task (graph, splits), for remedies that need the structure (tam)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where the model trains
    # set by remedies:
    class_weight: Optional[torch.Tensor] = None  # by weighting remedies, used by the loss
    # per-epoch class weights (deferred re-weighting): epoch -> weights or None; overrides class_weight
    class_weight_schedule: Optional[Callable[[int], Optional[torch.Tensor]]] = None
    min_epochs: int = 0  # early stopping waits at least this many epochs (a scheduled remedy raises it)
    # expected class counts of the rows the loss sees per epoch, when a sampler or synthesis remedy
    # changes them (set by ComposedRemedy.setup from Remedy.loss_class_counts); None: the split's
    loss_class_counts: Optional[torch.Tensor] = None

    @classmethod
    def for_task(cls, task: "Task", epochs: int = 200, seed: int = 0,
                 device: Optional[torch.device] = None) -> "RemedyContext":
        """The context of a run on ``task``: class statistics from ``task.split['train']`` only."""
        train_index = task.split["train"]
        return cls(num_classes=task.num_classes, train_index=train_index, train_labels=task.y[train_index],
                   kind=task.kind, epochs=epochs, seed=seed, class_names=list(task.class_names), task=task,
                   device=torch.device("cpu") if device is None else torch.device(device))

    @property
    def train_class_counts(self) -> torch.Tensor:
        return torch.bincount(self.train_labels, minlength=self.num_classes)

    @property
    def priors(self) -> torch.Tensor:
        counts = self.train_class_counts.double()
        return (counts / counts.sum()).float()

    @property
    def loss_priors(self) -> torch.Tensor:
        """The class distribution of the rows the training loss sees: ``priors`` unless a sampler
        or a synthesis remedy changes it (``loss_class_counts``)."""
        if self.loss_class_counts is None:
            return self.priors
        counts = self.loss_class_counts.double()
        return (counts / counts.sum()).float()

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 2

    def class_weight_at(self, epoch: int) -> Optional[torch.Tensor]:
        """Class weights in force at ``epoch``: the schedule (``drw``) if set, else ``class_weight``."""
        if self.class_weight_schedule is not None:
            return self.class_weight_schedule(epoch)
        return self.class_weight


@dataclass(frozen=True)
class BatchContext:
    """One training step, as the ``batch`` hook sees it."""

    items: torch.Tensor  # item ids of the step's training rows, in row order (repeats allowed), on the device
    epoch: int  # counted from 0


@dataclass
class GraphAugmentation:
    """What the ``augment`` hook returns: the graph one training step encodes instead of the
    task's graph, and the labelled synthetic nodes in it.

    ``data``: the augmented graph (a new ``HeteroData``; the task's graph is never modified).
    ``real_rows``: for each original item, its row in ``model.encode(data)`` (None: unchanged,
    i.e. new nodes were appended after every original item).
    ``new_rows``: rows of the synthetic labelled nodes in ``model.encode(data)``, and
    ``new_targets`` their hard labels; both empty when the augmentation adds no labelled node
    (e.g. virtual nodes or edges only). The loss sees the step's real rows first, then these.
    ``on_encoded``: called once with ``model.encode(data)`` of the step (detached; every node of
    the augmented graph), for a remedy that reads the training pass's own outputs at the next
    step (GraphENS's ``prev_out``). Build one with
    :func:`hgimb.imbalance.graph_augment.append_nodes`.

    ``hidden`` (optional): the synthetic nodes are made inside the model instead, before its output
    layer, from the hidden representations of the step (GraphSMOTE); see :class:`HiddenNodes`."""

    data: Any
    new_rows: torch.Tensor
    new_targets: torch.Tensor
    real_rows: Optional[torch.Tensor] = None
    on_encoded: Optional[Callable[[torch.Tensor], None]] = None
    hidden: Optional[Callable[["HiddenGraph"], "HiddenNodes"]] = None


@dataclass
class HiddenRelation:
    """One relation into the target node type, as the output layer reads it: ``source`` ``[N_s, d]``
    (the source type's rows in the output layer's input space; the target rows themselves for a
    relation of the target type to itself) and ``edges`` ``[2, E]`` (source ids -> target ids)."""

    source: torch.Tensor
    edges: torch.Tensor


@dataclass
class HiddenGraph:
    """What a model hands ``GraphAugmentation.hidden``: ``target`` ``[N, d]`` (the target type's
    rows -- the items -- in the output layer's input space) and ``relations`` (every relation the
    output layer aggregates into the target type, by a key the model chooses: the edge type of a
    heterogeneous model, ``"edges"`` for a one-type graph)."""

    target: torch.Tensor
    relations: Dict[Any, HiddenRelation]


@dataclass
class HiddenNodes:
    """Synthetic nodes inserted before a model's output layer (``GraphAugmentation.hidden``).

    The model calls ``hidden(graph)`` with a :class:`HiddenGraph` and gets back ``h`` ``[S, d]``
    (the new target-type nodes' rows in that space) and ``edges``: per relation key of the graph,
    ``(src, dst)``, in-edges from the relation's source ids to new node positions ``0..S-1`` (a
    relation may be absent: no edges). The new nodes' outputs follow the step's real rows, in the
    order of ``GraphAugmentation.new_targets`` (its ``new_rows`` and ``data`` are then unused: the
    graph is the task's). A model offers this with ``encode_extended(data, hidden)``
    (:mod:`hgimb.models.base`)."""

    h: torch.Tensor
    edges: Dict[Any, Tuple[torch.Tensor, torch.Tensor]]

    def relation(self, key) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(src, dst)`` of relation ``key`` (empty tensors when it has none)."""
        if key in self.edges:
            return self.edges[key]
        empty = torch.empty(0, dtype=torch.long, device=self.h.device)
        return empty, empty


class Remedy:
    """Base class. Subclasses set ``name`` and ``params`` (declared parameters with defaults;
    ``--remedy-param name=value`` overrides them) and override the hooks they need."""

    name: str = ""
    params: Dict[str, Any] = {}

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.params)
        if unknown:
            raise HgimbError(
                f"remedy '{self.name}' has no parameter(s) {sorted(unknown)}; its parameters: "
                f"{sorted(self.params) or 'none'}"
            )
        self.p: Dict[str, Any] = {**self.params, **params}
        self.ctx: Optional[RemedyContext] = None

    # -- set-up --------------------------------------------------------------------------
    def check(self, ctx: RemedyContext) -> None:
        """Raise HgimbError if this remedy does not apply to the task (e.g. binary-only)."""

    def setup(self, ctx: RemedyContext) -> None:
        """Compute what is needed from training-split statistics."""
        self.ctx = ctx

    def init_model(self, model: torch.nn.Module) -> None:
        """Adjust a freshly built model (e.g. set the output bias)."""

    # -- training ------------------------------------------------------------------------
    def train_index(self, epoch: int, rng: torch.Generator) -> Optional[torch.Tensor]:
        """Item indices (repeats allowed) that feed this epoch, or None."""
        return None

    def batch(self, step: BatchContext) -> None:
        """Called once per training step, before ``synthesize`` and ``loss`` see its rows:
        ``step.items`` says which item each row is, so a remedy that needs to know (``tam``)
        reads it here instead of owning ``train_index``."""

    def augment(self, data: Any, step: BatchContext, rng: torch.Generator) -> Optional[GraphAugmentation]:
        """Full-graph node tasks: the graph this step encodes instead of ``data`` (the task's
        graph, on the training device; never modify it), with any labelled synthetic nodes in it,
        or None for this step. Called before ``synthesize``; see :class:`GraphAugmentation`."""
        return None

    def synthesize(self, h: torch.Tensor, y: torch.Tensor, rng: torch.Generator
                   ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Given training embeddings and hard labels, return ``(h_new, target_new)`` that replace
        them for the head (targets may become soft ``[N, C]`` probabilities), or None."""
        return None

    def loss(self, logits: torch.Tensor, target: torch.Tensor, epoch: int) -> Optional[torch.Tensor]:
        """The training criterion (target: class indices ``[N]`` or soft labels ``[N, C]``)."""
        return None

    def values(self, items: torch.Tensor) -> Optional[torch.Tensor]:
        """A remedy that trains on a real-valued target instead of the class (``value-regression``):
        the float targets ``[N]`` of ``items``, for models fitted in one call (their ``fit_values``);
        None: the model fits the class labels."""
        return None

    def loss_class_counts(self, counts: torch.Tensor) -> Optional[torch.Tensor]:
        """A sampler or synthesis remedy: the expected number of rows of each class the loss sees
        per epoch (float64 ``[C]``) when the rows before this remedy have ``counts`` (the training
        split's, or what an earlier stage made of them); None: this remedy does not change them.
        Called after ``setup``."""
        return None

    # -- post-hoc ------------------------------------------------------------------------
    def adjust(self, val_logits: torch.Tensor, val_y: torch.Tensor) -> Optional[Dict[str, Any]]:
        """Fit post-hoc parameters on validation only; return them (saved in metrics.json)."""
        return None

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    # -- introspection -------------------------------------------------------------------
    def owns(self, hook: str) -> bool:
        return getattr(type(self), hook) is not getattr(Remedy, hook)

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in self.p.items())})"


def cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                  weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """CE for hard or soft targets, with optional class weights (the default criterion)."""
    if target.dtype.is_floating_point:
        logp = F.log_softmax(logits, dim=-1)
        w = torch.ones(logits.size(-1), device=logits.device) if weight is None else weight
        per_item = -(target * logp * w).sum(-1)
        norm = (target * w).sum(-1).sum()
        return per_item.sum() / norm.clamp_min(1e-12)
    return F.cross_entropy(logits, target, weight=weight)


class ComposedRemedy:
    """Several remedies acting as one; what the trainer talks to."""

    EXCLUSIVE = ("loss", "train_index", "synthesize", "augment", "values")

    def __init__(self, parts: List[Remedy]):
        self.parts = parts
        self.name = "+".join(p.name for p in parts) or "none"
        for hook in self.EXCLUSIVE:
            owners = [p.name for p in parts if p.owns(hook)]
            if len(owners) > 1:
                what = {"loss": "the training loss", "train_index": "which samples feed an epoch",
                        "synthesize": "synthetic samples", "augment": "how the input graph is augmented",
                        "values": "the real-valued training target"}[hook]
                raise HgimbError(
                    f"remedies {' and '.join(repr(o) for o in owners)} both decide {what}; combine at most one of them"
                )
        self.fitted: Dict[str, Any] = {}
        self.ctx: Optional[RemedyContext] = None

    def setup(self, ctx: RemedyContext) -> None:
        for part in self.parts:
            part.check(ctx)
        for part in self.parts:
            part.setup(ctx)
        ctx.loss_class_counts = self.loss_class_counts(ctx.train_class_counts.double())
        self.ctx = ctx

    # the order rows pass through the stages that may change their classes: the sampler draws the
    # epoch's items, augmentation adds synthetic nodes, synthesis adds synthetic embeddings
    PIPELINE = ("train_index", "augment", "synthesize")

    def loss_class_counts(self, counts: torch.Tensor) -> Optional[torch.Tensor]:
        """The class counts of the loss's rows after every stage (None: the same as ``counts``)."""
        changed, seen = False, []
        for hook in self.PIPELINE:
            owner = self._owner(hook)
            if owner is None or any(owner is s for s in seen):
                continue
            seen.append(owner)
            new = owner.loss_class_counts(counts)
            if new is not None:
                counts, changed = new.double(), True
        return counts if changed else None

    def init_model(self, model) -> None:
        for part in self.parts:
            part.init_model(model)

    def _owner(self, hook: str) -> Optional[Remedy]:
        return next((p for p in self.parts if p.owns(hook)), None)

    def train_index(self, epoch: int, rng: torch.Generator) -> Optional[torch.Tensor]:
        owner = self._owner("train_index")
        return owner.train_index(epoch, rng) if owner else None

    def batch(self, step: BatchContext) -> None:
        for part in self.parts:  # not exclusive: every part may look at the ids
            part.batch(step)

    @property
    def augments(self) -> bool:
        return self._owner("augment") is not None

    def augment(self, data, step: BatchContext, rng) -> Optional[GraphAugmentation]:
        owner = self._owner("augment")
        return owner.augment(data, step, rng) if owner else None

    def values(self, items: torch.Tensor) -> Optional[torch.Tensor]:
        owner = self._owner("values")
        return owner.values(items) if owner else None

    def synthesize(self, h, y, rng):
        owner = self._owner("synthesize")
        return owner.synthesize(h, y, rng) if owner else None

    def loss(self, logits, target, epoch: int) -> torch.Tensor:
        owner = self._owner("loss")
        if owner is not None:
            value = owner.loss(logits, target, epoch)
            if value is not None:
                return value
        weight = self.ctx.class_weight_at(epoch) if self.ctx is not None else None
        if weight is not None:
            weight = weight.to(logits.device)
        return cross_entropy(logits, target, weight)

    def adjust(self, val_logits, val_y) -> Dict[str, Any]:
        logits = val_logits
        for part in self.parts:
            fitted = part.adjust(logits, val_y)
            if fitted:
                self.fitted[part.name] = fitted
            logits = part.apply(logits)
        return self.fitted

    def apply(self, logits):
        for part in self.parts:
            logits = part.apply(logits)
        return logits

    @property
    def has_posthoc(self) -> bool:
        return any(p.owns("adjust") or p.owns("apply") for p in self.parts)


def compose(remedy: Union[None, Remedy, ComposedRemedy, Sequence[Remedy]]) -> ComposedRemedy:
    """Remedy objects as the trainer takes them: a :class:`ComposedRemedy` as it is, one
    :class:`Remedy` or a list of them composed, None for plain cross-entropy."""
    if isinstance(remedy, ComposedRemedy):
        return remedy
    if remedy is None:
        return ComposedRemedy([])
    parts = [remedy] if isinstance(remedy, Remedy) else list(remedy) if isinstance(remedy, (list, tuple)) else None
    if parts is None or not all(isinstance(p, Remedy) for p in parts):
        raise HgimbError(f"remedy {remedy!r} is not a Remedy object (nor a list of them); build one from a name with "
                         "hgimb.imbalance.build_remedy('focal'), or subclass hgimb.imbalance.Remedy")
    return ComposedRemedy(parts)
