"""Model ensembles: ``--model a+b+c`` trains every member on the same task and averages them.

Each member is built from the model registry and trained the way it declares (gradient steps or
one ``fit`` call) with the run's split, remedy, features and settings; member ``k`` receives the
``--model-option`` values it declares (:func:`hgimb.models.registry.member_options`) and the run's
seed, plus one for each earlier member of the same name (``cgcnn+cgcnn+cgcnn`` is three seeds of
CGCNN on the seed's split; ``cgcnn+random-forest`` trains both with the run's seed, so each member
equals its own single-model run).

The ensemble's class probabilities are the mean of the members' (soft voting, as scikit-learn's
``VotingClassifier(voting="soft")``, which cannot hold a GNN); its logits are their log. Post-hoc
remedies (``threshold``, ...) are then fitted again, on the ensemble's validation logits only, so
the decision rule belongs to the ensemble, not to one member. ``metrics.json`` reports the
ensemble and, under ``members``, every member's own validation and test scores, so a run shows
whether averaging paid.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Callable, Dict, List, Tuple

import torch
from torch import nn

from ..errors import HgimbError
from ..models.registry import member_options, model_members
from .fitted import PROBABILITY_FLOOR
from .trainer import TrainOutcome

MEMBER_METRICS = ("macro_f1", "balanced_accuracy", "pr_auc", "roc_auc", "minority_f1", "minority_recall")


def is_ensemble(model: str) -> bool:
    return len(model_members(model)) > 1


def member_configs(cfg, kind: str) -> List:
    """One RunConfig per member (see the module docstring for options and seeds)."""
    names = model_members(cfg.model)
    options = member_options(cfg.model, kind, cfg.model_options)
    seen: Dict[str, int] = {}
    out = []
    for name, opts in zip(names, options):
        repeat = seen.get(name, 0)
        seen[name] = repeat + 1
        out.append(dataclasses.replace(cfg, model=name, model_options=opts, seed=cfg.seed + repeat))
    return out


def combine(task, outcomes: List[TrainOutcome]) -> TrainOutcome:
    """The soft-voting ensemble of member outcomes trained on ``task`` (same rows, same order)."""
    first = outcomes[0]
    for outcome in outcomes[1:]:
        if not torch.equal(outcome.items, first.items):  # pragma: no cover - every trainer orders train, val, test
            raise HgimbError("ensemble members were evaluated on different items; cannot average them")
    probs = torch.stack([torch.softmax(o.logits.double(), 1) for o in outcomes]).mean(0)
    logits = probs.clamp_min(PROBABILITY_FLOOR).log().float()
    remedy = copy.deepcopy(outcomes[-1].remedy)  # same remedy as every member; its post-hoc parts refit below
    fitted: Dict = {}
    adjusted = logits
    if remedy.has_posthoc:
        remedy.fitted = {}
        n_train, n_val = task.split["train"].numel(), task.split["val"].numel()
        fitted = remedy.adjust(logits[n_train:n_train + n_val], task.y[task.split["val"]])
        adjusted = remedy.apply(logits)
    # the training curve shown is the longest member's (the GNN's, next to a one-call fit)
    longest = max(outcomes, key=lambda o: len(o.history))
    return TrainOutcome(model=nn.ModuleList([o.model for o in outcomes]), remedy=remedy, history=longest.history,
                        best_epoch=longest.best_epoch, epochs_run=longest.epochs_run,
                        train_seconds=sum(o.train_seconds for o in outcomes), logits=logits,
                        adjusted_logits=adjusted, items=first.items, fitted=fitted,
                        world_size=max(o.world_size for o in outcomes))


def train_ensemble(task, cfg, train_one: Callable) -> Tuple[TrainOutcome, List[Tuple]]:
    """Train every member with ``train_one(task, member_cfg) -> TrainOutcome``, then combine.
    Returns the ensemble's outcome and the ``(member_cfg, outcome)`` pairs."""
    configs = member_configs(cfg, task.kind)  # every name and option checked before anything trains
    outcomes = [train_one(task, member) for member in configs]
    return combine(task, outcomes), list(zip(configs, outcomes))


def member_summary(member_cfg, outcome: TrainOutcome, reports: Dict[str, dict]) -> dict:
    def pick(report: dict) -> dict:
        return {k: report[k] for k in MEMBER_METRICS if report.get(k) is not None}

    return {"model": member_cfg.model, "seed": member_cfg.seed, "model_options": dict(member_cfg.model_options),
            "best_epoch": outcome.best_epoch, "epochs_run": outcome.epochs_run,
            "train_seconds": round(outcome.train_seconds, 4), "val": pick(reports["val"]),
            "test": pick(reports["test"])}

