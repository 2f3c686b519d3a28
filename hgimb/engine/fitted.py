"""Training for fitted models: estimators that learn in one ``fit`` call, not by gradient steps.

The contract (a model *declares* it by having these methods; the engine never names a model):

* ``inputs(task, items) -> Tensor [N, D]``: the model's input rows for task items;
* ``fit(X, y, *, sample_weight=None, X_val=None, y_val=None, seed=0)``;
* ``predict_proba(X) -> ndarray [N, C]``.

:class:`FitTrainer` gives such a model the same split, remedies, metrics and run directory as a
GNN (it returns a :class:`~hgimb.engine.trainer.TrainOutcome` with one "epoch"):

* ``train_index`` remedies (``balanced-sampler``, ``oversample``, ``undersample``) choose the
  fitting rows (their epoch-0 draw);
* ``synthesize`` remedies add rows in input space (soft targets become their argmax);
* the loss a remedy would train with becomes per-row sample weights: its gradient with respect
  to all-zero logits, per class (:func:`effective_class_weights`). That is exactly the class
  weight of weighted cross-entropy (``weighted``), ``pos_weight`` for ``pos-weight``, and the
  class-dependent scale of any other loss at an uninformed prediction, with no remedy named;
* ``init_model`` remedies run as for any model (``prior-bias`` refuses a model without a linear head);
* post-hoc remedies (``threshold``, ...) are fitted on the validation logits ``log p``;
* a remedy with real-valued targets (``values``: ``value-regression``) makes the model fit its
  regression form (``fit_values(X, t, ...)``, a model capability like ``fit``) on them; its
  ``predict_proba`` then scores ``sigmoid`` of the prediction, and a weighting remedy's class
  weights become the sample weights.

The validation split is given to the estimator (``X_val``) for its own early stopping (the
analogue of the GNN's best epoch); nothing is fitted on test. A model with ``refit`` set (and a
``refit_on(X, y, sample_weight=, seed=)`` method) is then fitted again on train + validation with
the settings validation selected, and that model scores the test split; training and validation
outputs, the post-hoc fit and the validation metrics stay those of the first model. A refit takes
weighting and post-hoc remedies; sampling and synthesis remedies (which draw from the training
split only) are refused with it.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import HgimbError
from ..metrics import quick_score
from .trainer import TrainOutcome, seeded_context

PROBABILITY_FLOOR = 1e-7  # log(0) guard for logits = log p


def fits_directly(model) -> bool:
    """Whether ``model`` follows the fitted-model contract (see the module docstring)."""
    return all(callable(getattr(model, name, None)) for name in ("inputs", "fit", "predict_proba"))


def effective_class_weights(remedy, num_classes: int) -> Optional[np.ndarray]:
    """Per-class weight the remedy's training loss puts on an item at all-zero logits (mean 1),
    or None when every class weighs the same (plain cross-entropy)."""
    logits = torch.zeros(num_classes, num_classes, requires_grad=True)
    loss = remedy.loss(logits, torch.arange(num_classes), 0)
    (grad,) = torch.autograd.grad(loss, logits)
    weight = grad.abs().sum(1).double().numpy()
    if not np.isfinite(weight).all() or weight.max() <= 0:
        raise HgimbError(f"remedy '{remedy.name}' gives no usable class weighting for a fitted model")
    if np.allclose(weight, weight[0], rtol=1e-6):
        return None
    return weight / weight.mean()


class FitTrainer:
    def __init__(self, task, model, remedy, cfg):
        """``remedy``: as for :class:`~hgimb.engine.trainer.Trainer` (objects, or None)."""
        from ..imbalance import compose

        if getattr(cfg, "amp", "off") != "off":
            raise HgimbError(f"--amp applies to models trained by gradient steps; '{cfg.model}' fits in one call: "
                             "drop --amp")
        self.task, self.cfg, self.model = task, cfg, model
        self.rng, self.ctx = seeded_context(task, cfg, 1, torch.device("cpu"))
        self.remedy = compose(remedy)
        if self.remedy.augments:
            raise HgimbError(f"remedy '{self.remedy.name}' augments an input graph; '{cfg.model}' fits per-item "
                             "features in one call and has none")
        self.remedy.setup(self.ctx)
        self.remedy.init_model(self.model)
        if getattr(model, "refit", False):
            parts = [p.name for p in self.remedy.parts if p.owns("train_index") or p.owns("synthesize")]
            if parts:
                raise HgimbError(f"model option refit=true refits on train + validation, which remedy "
                                 f"{', '.join(repr(p) for p in parts)} does not draw from; use a weighting or "
                                 "post-hoc remedy with refit, or drop refit")

    def _logits(self, items: torch.Tensor) -> torch.Tensor:
        if items.numel() == 0:
            return torch.empty(0, self.task.num_classes)
        prob = self.model.predict_proba(self.model.inputs(self.task, items).numpy())
        return torch.from_numpy(np.log(np.clip(prob, PROBABILITY_FLOOR, 1.0))).float()

    def fit(self) -> TrainOutcome:
        task, cfg = self.task, self.cfg
        start = time.perf_counter()
        items = self.remedy.train_index(0, self.rng)
        if items is None:
            items = task.split["train"]
        X = self.model.inputs(task, items)
        y = task.y[items]
        values = self.remedy.values(items)  # a real-valued target instead of the class, if a remedy says so
        synthetic = self.remedy.synthesize(X, y, self.rng)
        if synthetic is not None:
            if values is not None:
                raise HgimbError(f"remedy '{self.remedy.name}' fits a real-valued target, which synthetic rows do "
                                 "not have: drop the synthesis remedy")
            X, y = synthetic
            y = y.argmax(1) if y.dtype.is_floating_point else y
        weights = self._class_weights(values is not None)
        sample_weight = None
        if weights is not None:
            sample_weight = weights[y.numpy()]
            sample_weight = sample_weight / sample_weight.mean()
        val = task.split["val"]
        X_val = self.model.inputs(task, val).numpy() if val.numel() else None
        if values is None:
            self.model.fit(X.detach().numpy(), y.numpy(), sample_weight=sample_weight, X_val=X_val,
                           y_val=task.y[val].numpy() if val.numel() else None, seed=cfg.seed)
        else:
            if not callable(getattr(self.model, "fit_values", None)):
                raise HgimbError(f"model '{cfg.model}' cannot fit the real-valued target of remedy "
                                 f"'{self.remedy.name}'; drop that remedy")
            self.model.fit_values(X.detach().numpy(), values.numpy(), sample_weight=sample_weight, X_val=X_val,
                                  t_val=self.remedy.values(val).numpy() if val.numel() else None, seed=cfg.seed)
        train_seconds = time.perf_counter() - start

        order = torch.cat([task.split[p] for p in ("train", "val", "test")])
        logits = self._logits(order)
        n_train, n_val = task.split["train"].numel(), val.numel()
        if getattr(self.model, "refit", False) and n_val:
            both = torch.cat([task.split["train"], val])
            y_both = task.y[both].numpy()
            target = y_both if values is None else self.remedy.values(both).numpy()
            self.model.refit_on(self.model.inputs(task, both).numpy(), target, seed=cfg.seed,
                                sample_weight=None if weights is None else weights[y_both] / weights[y_both].mean())
            logits[n_train + n_val:] = self._logits(task.split["test"])
            train_seconds = time.perf_counter() - start
        val_rows = slice(n_train, n_train + n_val)
        fitted = self.remedy.adjust(logits[val_rows], task.y[val]) if self.remedy.has_posthoc else {}
        adjusted = self.remedy.apply(logits) if self.remedy.has_posthoc else logits
        history = [self._history_row(logits, n_train, val, train_seconds)]
        return TrainOutcome(model=self.model, remedy=self.remedy, history=history, best_epoch=0, epochs_run=1,
                            train_seconds=train_seconds, logits=logits, adjusted_logits=adjusted, items=order,
                            fitted=fitted, world_size=1)

    def _class_weights(self, fits_values: bool) -> Optional[np.ndarray]:
        """Per-class sample weights (mean 1) or None. A classifier takes the weighting of the
        remedy's loss (:func:`effective_class_weights`); a real-valued fit takes a weighting
        remedy's class weights (its loss is a regression on the value, not a class weighting)."""
        if not fits_values:
            return effective_class_weights(self.remedy, self.task.num_classes)
        weight = self.ctx.class_weight_at(0)
        if weight is None:
            return None
        weight = weight.double().numpy()
        return weight / weight.mean()

    def _history_row(self, logits, n_train: int, val: torch.Tensor, seconds: float) -> dict:
        task = self.task
        train_y = task.y[task.split["train"]]
        val_logits = logits[n_train:n_train + val.numel()]
        val_y = task.y[val].numpy()
        val_pred = val_logits.argmax(1).numpy()
        row = {"epoch": 0, "train_loss": float(F.cross_entropy(logits[:n_train], train_y)) if n_train else float("nan"),
               "train_items": n_train,
               "val_loss": float(F.cross_entropy(val_logits, task.y[val])) if val.numel() else float("nan")}
        for metric in ("macro_f1", "balanced_accuracy", "accuracy"):
            row[f"val_{metric}"] = quick_score(val_y, val_pred, metric, task.num_classes) if val.numel() else 0.0
        row["seconds"] = seconds
        return row
