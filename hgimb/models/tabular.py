"""Tabular models for crystal tasks: scikit-learn estimators on per-crystal features.

They read ``data.u`` of every graph (``--features magpie``, ``chgnet`` or ``magpie+chgnet``)
and are *fitted models*: instead of ``encode``/``head`` trained by gradient steps they offer

* ``inputs(task, items) -> Tensor [N, D]``: the feature rows of the items;
* ``fit(X, y, *, sample_weight=None, X_val=None, y_val=None, seed=0)``;
* ``predict_proba(X) -> ndarray [N, C]``.

The engine dispatches on that capability (``hgimb.engine.fitted``), never on a model name, and
applies the remedies that make sense without gradient steps: sampling (``balanced-sampler``,
``oversample``, ``undersample``) picks the fitting rows, synthesis (``smote``-style remedies)
adds rows, a loss remedy's class weighting becomes per-row ``sample_weight`` and post-hoc
remedies (``threshold``) are fitted on validation as for GNNs. See docs/crystal.md.

Defaults: a 500-tree random forest (the issue's reference pipeline), extra trees alike,
``HistGradientBoostingClassifier`` early-stopped on the validation split (its own loss), and a
standardised logistic regression.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

import numpy as np
import torch
from torch import nn

from ..errors import HgimbError
from .base import ModelConfig
from .registry import register_model


class FittedModel(nn.Module):
    """A scikit-learn estimator behind the fitted-model contract. The fitted estimator travels
    in the module's extra state, so ``model.pt`` (``state_dict``) holds it."""

    def __init__(self, name: str, factory: Callable[[int], Any], uses_validation: bool = False):
        super().__init__()
        self.name = name
        self.factory = factory
        self.uses_validation = uses_validation
        self.estimator = None

    def inputs(self, task, items: torch.Tensor) -> torch.Tensor:
        graphs = task.graphs
        if getattr(graphs[0], "u", None) is None:
            raise HgimbError(f"model '{self.name}' reads per-crystal features; pass --features magpie "
                             f"(or chgnet, magpie+chgnet)")
        return torch.cat([graphs[i].u for i in items.tolist()], dim=0).float()

    def fit(self, X, y, *, sample_weight=None, X_val=None, y_val=None, seed: int = 0) -> "FittedModel":
        estimator = self.factory(seed)
        X, y = np.asarray(X), np.asarray(y)
        extra: Dict[str, Any] = {}
        if self.uses_validation and X_val is not None and len(X_val) and len(np.unique(y_val)) > 1:
            extra = {"X_val": np.asarray(X_val), "y_val": np.asarray(y_val)}
        if sample_weight is not None:
            extra["sample_weight"] = np.asarray(sample_weight)
        from sklearn.pipeline import Pipeline

        if isinstance(estimator, Pipeline):  # route fit parameters to the last step
            estimator.fit(X, y, **{f"{estimator.steps[-1][0]}__{k}": v for k, v in extra.items()})
        else:
            estimator.fit(X, y, **extra)
        self.estimator = estimator
        return self

    def predict_proba(self, X) -> np.ndarray:
        if self.estimator is None:
            raise RuntimeError(f"model '{self.name}' is not fitted")  # pragma: no cover - engine order
        return self.estimator.predict_proba(np.asarray(X))

    def get_extra_state(self):
        return {"name": self.name, "estimator": self.estimator}

    def set_extra_state(self, state) -> None:
        self.estimator = state.get("estimator")

    def forward(self, X):  # pragma: no cover - fitted models are not called like modules
        raise RuntimeError(f"model '{self.name}' is a fitted model: use fit/predict_proba")


def _options(cfg: ModelConfig, model: str, defaults: Dict[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(cfg.options) - set(defaults))
    if unknown:
        raise HgimbError(f"model '{model}' does not take option(s) {', '.join(unknown)}; "
                         f"valid options: {', '.join(sorted(defaults))}")
    return {**defaults, **cfg.options}


def _positive_int(model: str, opts: Dict[str, Any], key: str, allow_none: bool = False):
    value = opts[key]
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HgimbError(f"model '{model}': option {key} must be an integer >= 1{' or none' if allow_none else ''}, "
                         f"got {value!r}")
    return value


def _positive_float(model: str, opts: Dict[str, Any], key: str) -> float:
    value = opts[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise HgimbError(f"model '{model}': option {key} must be a number > 0, got {value!r}")
    return float(value)


def _max_features(model: str, value):
    if value in ("sqrt", "log2", None) or (isinstance(value, float) and 0 < value <= 1):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise HgimbError(f"model '{model}': option max_features must be sqrt, log2, none, a fraction in (0, 1] "
                     f"or an integer >= 1, got {value!r}")


def _forest(kind: str):
    def build(task, cfg: ModelConfig) -> FittedModel:
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

        opts = _options(cfg, kind, {"n_estimators": 500, "max_features": "sqrt", "min_samples_leaf": 1,
                                    "max_depth": None})
        n_estimators = _positive_int(kind, opts, "n_estimators")
        leaf = _positive_int(kind, opts, "min_samples_leaf")
        depth = _positive_int(kind, opts, "max_depth", allow_none=True)
        features = _max_features(kind, opts["max_features"])
        cls = RandomForestClassifier if kind == "random-forest" else ExtraTreesClassifier
        return FittedModel(kind, lambda seed: cls(n_estimators=n_estimators, max_features=features,
                                                  min_samples_leaf=leaf, max_depth=depth, n_jobs=1,
                                                  random_state=seed))

    return build


# the descriptors of the crystal leaderboard (BENCHMARKS section 2) unless --features says otherwise
TABULAR_DEFAULTS = {"features": "magpie"}
register_model("random-forest", kinds=("graph",), defaults=TABULAR_DEFAULTS,
               help="random forest (scikit-learn, 500 trees) on per-crystal features (--features)")(_forest("random-forest"))
register_model("extra-trees", kinds=("graph",), defaults=TABULAR_DEFAULTS,
               help="extremely randomised trees (scikit-learn, 500 trees) on per-crystal features")(_forest("extra-trees"))


@register_model("hist-gb", kinds=("graph",), defaults=TABULAR_DEFAULTS,
                help="histogram gradient boosting (scikit-learn), early-stopped on validation, per-crystal features")
def build_hist_gb(task, cfg: ModelConfig) -> FittedModel:
    from sklearn.ensemble import HistGradientBoostingClassifier

    opts = _options(cfg, "hist-gb", {"learning_rate": 0.05, "max_iter": 1000, "max_leaf_nodes": 15,
                                     "min_samples_leaf": 10, "l2_regularization": 1.0, "n_iter_no_change": 50,
                                     "max_features": 0.5})
    lr = _positive_float("hist-gb", opts, "learning_rate")
    max_iter = _positive_int("hist-gb", opts, "max_iter")
    leaves = _positive_int("hist-gb", opts, "max_leaf_nodes")
    leaf = _positive_int("hist-gb", opts, "min_samples_leaf")
    patience = _positive_int("hist-gb", opts, "n_iter_no_change")
    l2 = float(opts["l2_regularization"])
    if not np.isfinite(l2) or l2 < 0:
        raise HgimbError(f"model 'hist-gb': option l2_regularization must be >= 0, got {opts['l2_regularization']!r}")
    fraction = opts["max_features"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise HgimbError(f"model 'hist-gb': option max_features must be a fraction in (0, 1], got {fraction!r}")
    # early stopping on hgimb's validation split (passed as X_val): the analogue of the GNNs'
    # best-epoch selection; without one, scikit-learn's internal 10% hold-out
    return FittedModel("hist-gb", lambda seed: HistGradientBoostingClassifier(
        learning_rate=lr, max_iter=max_iter, max_leaf_nodes=leaves, min_samples_leaf=leaf,
        l2_regularization=l2, max_features=float(fraction), early_stopping=True, n_iter_no_change=patience,
        random_state=seed), uses_validation=True)


@register_model("logistic", kinds=("graph",), defaults=TABULAR_DEFAULTS,
                help="logistic regression on standardised per-crystal features (scikit-learn)")
def build_logistic(task, cfg: ModelConfig) -> FittedModel:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    opts = _options(cfg, "logistic", {"C": 1.0, "max_iter": 5000})
    c = _positive_float("logistic", opts, "C")
    max_iter = _positive_int("logistic", opts, "max_iter")

    return FittedModel("logistic", lambda seed: Pipeline([
        ("scale", StandardScaler()), ("model", LogisticRegression(C=c, max_iter=max_iter, random_state=seed))]))
