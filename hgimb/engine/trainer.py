"""The trainer: one loop for node and graph tasks, every remedy hook in its place.

``Trainer(task, model, remedy, cfg)`` trains any model that follows the model contract
(:mod:`hgimb.models.base`: ``encode`` + ``head``) with any remedy objects (:mod:`hgimb.imbalance.base`);
``Trainer.from_config(cfg, task)`` builds both from the registries by name, as the CLI does.

Per epoch: the remedy picks the items (``train_index``) or all training items are shuffled;
each step encodes a chunk (on the remedy's ``augment``-ed graph if it has one: full-graph only),
lets the remedy ``synthesize`` in embedding space, applies the head
and the remedy's ``loss``. Then a validation pass; the best epoch by ``cfg.monitor`` is kept
(early stopping after ``cfg.patience`` epochs without improvement) and restored at the end.
Post-hoc calibration is fitted on validation logits only, then applied to every split.

Under torchrun (several processes) each rank trains on a strided shard of the epoch's items and
the loss is taken over the gathered global batch; see :mod:`hgimb.engine.distributed`.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..data.task import Task
from ..errors import HgimbError
from ..imbalance import BatchContext, ComposedRemedy, Remedy, RemedyContext, build_remedy, compose
from ..metrics import MONITOR_METRICS, RANKING_MONITORS, quick_score, ranking_score
from ..models import ModelConfig, build_model
from ..models.base import check_trainable
from . import distributed, optim
from .batching import BATCHING, batching_for
from .precision import Precision


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HgimbError(f"--device {name} asked for CUDA, but torch.cuda.is_available() is False on this machine; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise HgimbError(f"--device '{name}' is not a device torch knows (cpu, cuda, cuda:N, auto)") from None


@dataclass
class TrainOutcome:
    model: torch.nn.Module
    remedy: ComposedRemedy
    history: List[Dict[str, float]]
    best_epoch: int
    epochs_run: int
    train_seconds: float
    logits: torch.Tensor  # raw logits of the evaluated items (rows follow `items`)
    adjusted_logits: torch.Tensor  # after post-hoc calibration
    items: torch.Tensor  # item indices the logits belong to (train, val, test)
    fitted: Dict[str, Any] = field(default_factory=dict)
    world_size: int = 1  # training processes (torchrun); 1 = this process alone

    @property
    def seconds_per_epoch(self) -> float:
        return self.train_seconds / max(self.epochs_run, 1)


def model_config(cfg: RunConfig) -> ModelConfig:
    options = dict(cfg.model_options)
    if cfg.metapaths:
        options.setdefault("metapaths", cfg.metapaths)
    return ModelConfig(hidden=cfg.hidden, layers=cfg.layers, dropout=cfg.dropout, heads=cfg.heads, options=options)


def make_optimizer(cfg: RunConfig, params, no_decay=()):
    """``no_decay``: parameters the model exempts from weight decay (``model.no_weight_decay()``,
    e.g. the GraphENS/TAM backbones decay their first layer only); they go in a second group."""
    params = [p for p in params if p.requires_grad]
    exempt = {id(p) for p in no_decay}
    if exempt and cfg.weight_decay:
        params = [{"params": [p for p in params if id(p) not in exempt]},
                  {"params": [p for p in params if id(p) in exempt], "weight_decay": 0.0}]
    # foreach: one multi-tensor update instead of a loop over parameters (bitwise the same
    # result, about 3x faster per step on Freebase RGCN)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: RunConfig, optimizer):
    """``--scheduler plateau``: ReduceLROnPlateau on the validation loss (factor 0.5, patience
    100 epochs), as the GraphENS / TAM / GraphSHA code; ``none``: a constant learning rate."""
    if getattr(cfg, "scheduler", "none") == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=100)
    return None


def build_from_config(cfg: RunConfig, task: Task) -> Tuple[torch.nn.Module, ComposedRemedy]:
    """``cfg.model`` and ``cfg.remedy`` built from their registries; torch is seeded with
    ``cfg.seed`` just before the model is built, so its initial weights follow the seed."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, task, model_config(cfg))
    return model, build_remedy(cfg.remedy, cfg.remedy_params)


def seeded_context(task: Task, cfg: RunConfig, epochs: int, device: torch.device
                   ) -> Tuple[torch.Generator, RemedyContext]:
    """Seed torch, then make the run's generator and remedy context (every trainer starts the
    same way, so a remedy sees the same context whoever trains)."""
    torch.manual_seed(cfg.seed)
    rng = torch.Generator().manual_seed(cfg.seed)
    return rng, RemedyContext.for_task(task, epochs=epochs, seed=cfg.seed, device=device)


RemedyLike = Union[None, Remedy, ComposedRemedy, Sequence[Remedy]]


class Trainer:
    def __init__(self, task: Task, model: torch.nn.Module, remedy: RemedyLike, cfg: RunConfig, progress=None):
        """``model``: any ``nn.Module`` with the model contract (``encode`` and ``head``;
        declarations such as ``num_hops`` where a feature needs them: :mod:`hgimb.models.base`).
        ``remedy``: a :class:`~hgimb.imbalance.Remedy`, a list of them, a composed remedy, or None
        (plain cross-entropy). ``cfg`` gives the training settings (its ``model``/``remedy``
        names are not read here). Torch is seeded with ``cfg.seed`` before training starts."""
        check_trainable(model)
        remedy = compose(remedy)
        if cfg.monitor not in MONITOR_METRICS:
            raise HgimbError(f"--monitor '{cfg.monitor}' is not one of {', '.join(MONITOR_METRICS)}")
        if cfg.monitor in RANKING_MONITORS and not task.is_binary:
            raise HgimbError(f"--monitor {cfg.monitor} ranks the positive class of a binary task; '{task.name}' has "
                             f"{task.num_classes} classes: use macro_f1, balanced_accuracy or loss")
        self.task, self.cfg = task, cfg
        self.world = distributed.current()
        self.device = distributed.local_device(resolve_device(cfg.device), self.world)
        self.progress = progress
        self.rng, self.ctx = seeded_context(task, cfg, cfg.epochs, self.device)
        self.remedy = remedy
        self.remedy.setup(self.ctx)
        self.model = model.to(self.device)
        self.remedy.init_model(self.model)
        if self.world.active:  # every rank seeded alike already; rank 0's values make it certain
            distributed.broadcast_module(self.model)
        self.batching = BATCHING.get(batching_for(task, cfg))(task, cfg, self.device)
        if self.remedy.augments:
            if not hasattr(self.batching, "encode_augmented"):
                raise HgimbError(f"remedy '{self.remedy.name}' augments the input graph, which needs full-graph "
                                 f"training of a node task; this run uses {batching_for(task, cfg)} batching"
                                 + (" (drop --batch-size)" if task.kind == "node" else ""))
            if self.world.active:
                raise HgimbError(f"remedy '{self.remedy.name}' augments the input graph, which runs in one process "
                                 "only; run it without torchrun")
        no_decay = self.model.no_weight_decay() if hasattr(self.model, "no_weight_decay") else ()
        # featureless id tables of sampled subgraphs: row-sparse gradients + lazy Adam (engine/optim.py)
        if optim.configure_sparse(cfg, self.model, minibatch=batching_for(task, cfg) == "neighbor-sampling"):
            self.optimizer = optim.sparse_optimizer(cfg, self.model.parameters(), no_decay)
        else:
            self.optimizer = make_optimizer(cfg, self.model.parameters(), no_decay)
        self.scheduler = make_scheduler(cfg, self.optimizer)
        self.precision = Precision(cfg.amp, self.device)
        if self.world.active and self.precision.scaler is not None:
            raise HgimbError("--amp with float16 and a gradient scaler is single-process only; under torchrun use "
                             "--amp bf16")
        self.y = task.y.to(self.device)

    @classmethod
    def from_config(cls, cfg: RunConfig, task: Task, progress=None) -> "Trainer":
        """The trainer of ``cfg``: model and remedy built by name from the registries."""
        model, remedy = build_from_config(cfg, task)
        return cls(task, model, remedy, cfg, progress=progress)

    # ------------------------------------------------------------------ one epoch
    def _epoch_items(self, epoch: int) -> torch.Tensor:
        """This epoch's items (repeats allowed), the same on every rank: the generator is seeded
        alike everywhere and every rank makes the same draws."""
        idx = self.remedy.train_index(epoch, self.rng)
        if idx is None:
            train = self.task.split["train"]
            idx = train[torch.randperm(train.numel(), generator=self.rng)]
        return idx

    def train_epoch(self, epoch: int) -> Tuple[float, int]:
        """One epoch; returns the mean training loss and the number of items fed to the loss
        (over all ranks, before synthesis)."""
        self.model.train()
        items = self._epoch_items(epoch)
        if self.world.active:
            return self._train_epoch_sharded(epoch, items)
        total, count = 0.0, 0
        for chunk in self.batching.chunks(items):
            self.optimizer.zero_grad(set_to_none=True)
            target = self.y[chunk.to(self.device)]
            step = BatchContext(chunk.to(self.device), epoch)
            self.remedy.batch(step)
            aug = self.remedy.augment(self.batching.augmentable_graph(), step, self.rng) if self.remedy.augments else None
            with self.precision.autocast():
                if aug is None:
                    h = self.batching.encode(self.model, chunk)
                else:
                    h = self.batching.encode_augmented(self.model, chunk, aug)
                    target = torch.cat([target, aug.new_targets.to(self.device, target.dtype)])
                synthetic = self.remedy.synthesize(h, target, self.rng)
                if synthetic is not None:
                    h, target = synthetic
                logits = self.model.head(h)
            loss = self.remedy.loss(self.precision.output(logits), target, epoch)
            self._check_finite(loss, epoch)
            self.precision.backward_step(loss, self.optimizer)
            total += float(loss.detach()) * len(chunk)
            count += len(chunk)
        return total / max(count, 1), count

    def _check_finite_outputs(self, logits: torch.Tensor, epoch: int) -> None:
        if not torch.isfinite(logits).all():
            raise HgimbError(f"the model's outputs became NaN/inf after epoch {epoch} (the weights diverged); "
                             f"lower --lr (now {self.cfg.lr:g}) or check the input features for huge values")

    @staticmethod
    def _check_finite(loss: torch.Tensor, epoch: int) -> None:
        if not torch.isfinite(loss):
            raise HgimbError(f"training loss became {loss.item()} at epoch {epoch}; lower --lr or check the remedy parameters")

    def _train_epoch_sharded(self, epoch: int, items: torch.Tensor) -> Tuple[float, int]:
        """This rank's strided shard of the epoch, in the batching's chunks. A rank with fewer
        chunks than the others takes empty steps, so that all ranks make the same collective
        calls; padding with repeated items instead would count those items twice in the loss."""
        mine = distributed.shard(items, self.world)
        chunks = list(self.batching.chunks(mine)) if mine.numel() else []
        steps = distributed.max_int(len(chunks))
        chunks += [mine[:0]] * (steps - len(chunks))
        total, count = 0.0, 0
        for chunk in chunks:
            loss, n = self._sharded_step(chunk, epoch)
            total += loss * n
            count += n
        distributed.average_buffers(self.model)
        return total / max(count, 1), count

    def _sharded_step(self, chunk: torch.Tensor, epoch: int) -> Tuple[float, int]:
        """One optimiser step on the global batch (every rank's chunk); returns its loss and size.

        The encoder runs on this rank's chunk only. Embeddings and labels of all ranks are
        gathered in epoch order, and every rank applies synthesis, head and loss to the whole
        global batch, so the loss is exactly the single-process loss of that batch (the remedy's
        own normalisation over all items, not a mean of per-rank means). The gathered embeddings
        are a leaf: after ``loss.backward()`` the head's gradient is complete on every rank, and
        the leaf's gradient on this rank's rows is pushed back through the local encoder. Dividing
        the head's share by the world size before the summing all-reduce gives head + sum of the
        encoder shares: the full-batch gradient. (DistributedDataParallel is not used: its reducer
        syncs only after its own forward, which ``encode`` / ``head`` called separately bypass.)"""
        self.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            h_local = self.batching.encode(self.model, chunk) if chunk.numel() else None
        y_local = self.y[chunk.to(self.device)]
        h_all, own = distributed.gather_rows(h_local, dtype=self.param_dtype, ndim=2)
        y_all, _ = distributed.gather_rows(y_local, dtype=y_local.dtype, ndim=1)
        h_all, y_all, own = h_all.to(self.device).requires_grad_(), y_all.to(self.device), own.to(self.device)
        h, target = h_all, y_all
        items_all, _ = distributed.gather_rows(chunk.to(self.device), dtype=chunk.dtype, ndim=1)
        self.remedy.batch(BatchContext(items_all.to(self.device), epoch))
        synthetic = self.remedy.synthesize(h, target, self.rng)  # same draws on every rank
        if synthetic is not None:
            h, target = synthetic
        with self.precision.autocast():
            logits = self.model.head(h)
        loss = self.remedy.loss(self.precision.output(logits), target, epoch)
        self._check_finite(loss, epoch)  # the same value on every rank: all raise together
        loss.backward()
        distributed.scale_gradients(self.model.parameters(), 1.0 / self.world.size)
        if h_local is not None and h_local.requires_grad and h_all.grad is not None:
            h_local.backward(h_all.grad[own].to(h_local.dtype))
        distributed.all_reduce_gradients(self.model.parameters())
        self.optimizer.step()
        return float(loss.detach()), int(y_all.numel())

    @property
    def param_dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def evaluate(self, items: torch.Tensor) -> torch.Tensor:
        """Logits of ``items`` in order (eval mode). With several ranks each computes its strided
        shard and the logits are gathered to every rank, so every rank sees the same numbers."""
        self.model.eval()
        if not self.world.active:
            with self.precision.autocast():
                return self.precision.output(self.batching.logits(self.model, items))
        mine = distributed.shard(items, self.world)
        with self.precision.autocast():
            local = self.precision.output(self.batching.logits(self.model, mine)) if mine.numel() else None
        return distributed.gather_rows(local, dtype=self.param_dtype, ndim=2)[0].to(self.device)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainOutcome:
        cfg, task = self.cfg, self.task
        val = task.split["val"]
        val_y = task.y[val].numpy()
        higher_is_better = cfg.monitor != "loss"
        best_score, best_epoch, best_state = -np.inf, 0, None
        history: List[Dict[str, float]] = []
        since_best = 0
        start = time.perf_counter()
        epochs = range(cfg.epochs)
        bar = self.progress(epochs) if self.progress else epochs
        for epoch in bar:
            t0 = time.perf_counter()
            train_loss, train_items = self.train_epoch(epoch)
            val_logits = self.evaluate(val).float().cpu()
            self._check_finite_outputs(val_logits, epoch)
            val_pred = val_logits.argmax(1).numpy()
            row = {"epoch": epoch, "train_loss": train_loss, "train_items": train_items,
                   "val_loss": float(F.cross_entropy(val_logits, task.y[val])) if val.numel() else float("nan"),
                   "val_macro_f1": quick_score(val_y, val_pred, "macro_f1", task.num_classes) if val.numel() else 0.0,
                   "val_balanced_accuracy": quick_score(val_y, val_pred, "balanced_accuracy", task.num_classes) if val.numel() else 0.0,
                   "val_accuracy": quick_score(val_y, val_pred, "accuracy", task.num_classes) if val.numel() else 0.0}
            row["val_acc_f1"] = (row["val_accuracy"] + row["val_macro_f1"]) / 2.0  # GraphENS/TAM/GraphSHA selection
            if cfg.monitor in RANKING_MONITORS:  # threshold-free selection (binary): PR-AUC / ROC-AUC
                row[f"val_{cfg.monitor}"] = ranking_score(val_y, (val_logits[:, 1] - val_logits[:, 0]).numpy(), cfg.monitor)
            elif cfg.monitor != "loss" and f"val_{cfg.monitor}" not in row:  # micro_f1, g_mean
                row[f"val_{cfg.monitor}"] = quick_score(val_y, val_pred, cfg.monitor, task.num_classes) if val.numel() else 0.0
            if self.scheduler is not None:
                self.scheduler.step(row["val_loss"])
            row["seconds"] = time.perf_counter() - t0
            history.append(row)
            score = -row["val_loss"] if not higher_is_better else row[f"val_{cfg.monitor}"]
            improved = score > best_score
            if self.world.active:  # identical inputs on every rank already; rank 0 decides regardless
                (improved,) = distributed.broadcast_flags(improved)
            if improved:
                best_score, best_epoch, since_best = score, epoch, 0
                best_state = copy.deepcopy(self.model.state_dict())
            else:
                since_best += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{row[f'val_{cfg.monitor}'] if higher_is_better else row['val_loss']:.3f}")
            # a remedy with a schedule raises the minimum run length (RemedyContext.min_epochs)
            if since_best >= cfg.patience and epoch + 1 >= self.ctx.min_epochs:
                break
        train_seconds = time.perf_counter() - start
        if best_state is not None:
            self.model.load_state_dict(best_state)

        items = torch.cat([task.split[p] for p in ("train", "val", "test")])
        logits = self.evaluate(items).float().cpu()
        n_train, n_val = task.split["train"].numel(), val.numel()
        val_rows = slice(n_train, n_train + n_val)
        fitted = self.remedy.adjust(logits[val_rows], task.y[val]) if self.remedy.has_posthoc else {}
        adjusted = self.remedy.apply(logits) if self.remedy.has_posthoc else logits
        return TrainOutcome(model=self.model, remedy=self.remedy, history=history, best_epoch=best_epoch,
                            epochs_run=len(history), train_seconds=train_seconds, logits=logits,
                            adjusted_logits=adjusted, items=items, fitted=fitted, world_size=self.world.size)
