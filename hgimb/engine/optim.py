"""Sparse embedding training: featureless node types' tables get row-sparse gradients and a lazy Adam.

A mini-batch touches a few thousand rows of each learnable embedding table, but with a dense
gradient the backward allocates and fills a table-sized gradient and Adam then reads and writes
every row of the table and of its two moment buffers at every step: at 5M nodes that is what a
step costs, not the sampled subgraph. With ``--sparse-embeddings on`` the tables
(:class:`hgimb.models.base.HeteroInput`) look rows up with ``F.embedding(sparse=True)``, so the
gradient holds the touched rows only, and :class:`LazyAdam` updates those rows and their moments.

``auto`` (the default) turns it on for mini-batch node training with Adam when the featureless tables
hold at least :data:`AUTO_MIN_ROWS` rows together; full-batch runs touch every row anyway
(their gradient stays dense whatever the setting).

Why not ``torch.optim.SparseAdam`` beside ``Adam``: SparseAdam has no weight decay (so the same
config would train a different model on the tables), and two optimisers break LR schedulers that
expect one ``Optimizer``. :class:`LazyAdam` is one ``Optimizer``: ``torch.optim.Adam``'s update
(L2 weight decay added to the gradient, bias correction by the parameter's step count) for dense
gradients, and the same update restricted to the gradient's rows for sparse ones (the rows a step
does not touch keep their values and moments: the "lazy" Adam of TensorFlow Addons / SparseAdam).
"""
from __future__ import annotations

import math
from typing import Iterable, List

import torch
from torch import nn

SPARSE_MODES = ("auto", "on", "off")
AUTO_MIN_ROWS = 200_000  # featureless rows (all tables) from which 'auto' goes sparse in mini-batch runs


class LazyAdam(torch.optim.Optimizer):
    """Adam for dense gradients (as ``torch.optim.Adam``, L2 ``weight_decay``) and row-sparse ones
    (the update of ``torch.optim.Adam`` applied to the gradient's rows only)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"LazyAdam: invalid lr {lr}, betas {betas}, eps {eps} or weight_decay {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step_size = lr / (1 - beta1 ** state["step"])
                bias_correction2_sqrt = math.sqrt(1 - beta2 ** state["step"])
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                if p.grad.is_sparse:
                    grad = p.grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                    if rows.numel() == 0:
                        continue
                    if decay:
                        values = values.add(p.index_select(0, rows), alpha=decay)
                    m = exp_avg.index_select(0, rows).lerp_(values, 1 - beta1)
                    v = exp_avg_sq.index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
                    exp_avg.index_copy_(0, rows, m)
                    exp_avg_sq.index_copy_(0, rows, v)
                    denom = v.sqrt_().div_(bias_correction2_sqrt).add_(eps)
                    p.index_add_(0, rows, m.div_(denom), alpha=-step_size)
                else:
                    grad = p.grad if not decay else p.grad.add(p, alpha=decay)
                    exp_avg.lerp_(grad, 1 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad.conj(), value=1 - beta2)
                    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                    p.addcdiv_(exp_avg, denom, value=-step_size)
        return loss


def embedding_inputs(model: nn.Module) -> List[nn.Module]:
    """The modules of ``model`` that own featureless embedding tables and can go sparse
    (they have a ``sparse_embeddings`` attribute: :class:`~hgimb.models.base.HeteroInput`)."""
    return [m for m in model.modules() if hasattr(m, "sparse_embeddings") and hasattr(m, "embed")]


def embedding_rows(model: nn.Module) -> int:
    return sum(int(emb.weight.size(0)) for m in embedding_inputs(model) for emb in m.embed.values())


def choose_sparse(mode: str, model: nn.Module, minibatch: bool) -> bool:
    """Whether the run trains its embedding tables with sparse gradients."""
    if mode not in SPARSE_MODES:
        raise ValueError(f"sparse_embeddings '{mode}' is not one of {', '.join(SPARSE_MODES)}")
    if mode == "off" or not embedding_inputs(model):
        return False
    if mode == "on":
        return True
    return minibatch and embedding_rows(model) >= AUTO_MIN_ROWS


def configure_sparse(cfg, model: nn.Module, minibatch: bool) -> bool:
    """Switch ``model``'s embedding tables to sparse gradients when ``cfg.sparse_embeddings``
    says so; returns whether it did (the optimiser must then accept sparse gradients)."""
    mode = getattr(cfg, "sparse_embeddings", "auto")
    # auto never changes the optimiser a user chose: the lazy form exists for Adam only
    sparse = choose_sparse(mode, model, minibatch) and (mode == "on" or cfg.optimizer == "adam")
    for module in embedding_inputs(model):
        module.sparse_embeddings = sparse
        for emb in module.embed.values():
            # read by distributed.all_reduce_gradients: every rank must agree on which
            # gradients are exchanged as rows, whatever this step touched
            emb.weight.hgimb_sparse_grad = sparse
    return sparse


def sparse_optimizer(cfg, params: Iterable[nn.Parameter], no_decay=()) -> torch.optim.Optimizer:
    """The optimiser of a run whose tables have sparse gradients: :class:`LazyAdam` with the
    settings ``make_optimizer`` would give Adam (``adamw``/``sgd`` have no lazy form here)."""
    if cfg.optimizer != "adam":
        from ..errors import HgimbError

        raise HgimbError(f"--sparse-embeddings on trains with a lazy Adam; --optimizer {cfg.optimizer} has no "
                         "sparse form here: use --optimizer adam or --sparse-embeddings off")
    params = [p for p in params if p.requires_grad]
    exempt = {id(p) for p in no_decay}
    if exempt and cfg.weight_decay:
        params = [{"params": [p for p in params if id(p) not in exempt]},
                  {"params": [p for p in params if id(p) in exempt], "weight_decay": 0.0}]
    return LazyAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


__all__ = ["LazyAdam", "SPARSE_MODES", "AUTO_MIN_ROWS", "choose_sparse", "configure_sparse", "sparse_optimizer",
           "embedding_inputs", "embedding_rows"]
