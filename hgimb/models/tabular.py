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
remedies (``threshold``) are fitted on validation as for GNNs. With ``value-regression`` the
forests and ``hist-gb`` fit their regression form (``fit_values``: the scikit-learn regressor with
the same options) on the scaled real value behind a thresholded label, and ``predict_proba``
gives ``sigmoid`` of the prediction as the positive class's probability. See docs/crystal.md.

Defaults: a 500-tree random forest (the issue's reference pipeline), extra trees alike,
``HistGradientBoostingClassifier`` early-stopped on the validation split (its own loss), and a
standardised logistic regression.

``--model-option refit=true`` (every tabular model): after the model fitted on the training split
has done what validation is for (boosting's early stopping, the post-hoc threshold, the validation
metrics), the same estimator is fitted again on train + validation with the settings validation
selected (``hist-gb``: the early-stopped number of iterations, no early stopping) and scores the
test split; the threshold fitted on the first model's validation outputs is applied to it. This is
the common "select on validation, refit on everything you may train on" protocol; validation
metrics stay those of the first model.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
from torch import nn

from ..errors import HgimbError
from ..params import Param, Range, Rule
from .base import ModelConfig
from .registry import register_model


class FittedModel(nn.Module):
    """A scikit-learn estimator behind the fitted-model contract. The fitted estimator travels
    in the module's extra state, so ``model.pt`` (``state_dict``) holds it."""

    def __init__(self, name: str, factory: Callable[..., Any], uses_validation: bool = False,
                 refit: bool = False, selected: Callable[[Any], Dict[str, Any]] = lambda estimator: {},
                 regressor: Optional[Callable[..., Any]] = None):
        """``factory(seed, **overrides)`` builds an unfitted classifier, ``regressor`` (same
        signature) the model's regression form for a real-valued target (``fit_values``);
        ``selected(estimator)``: the settings a fitted estimator's validation use chose, as
        overrides for the refit."""
        super().__init__()
        self.name = name
        self.factories = {"classify": factory, "regress": regressor}
        self.uses_validation = uses_validation
        self.refit = refit
        self.selected = selected
        self.estimator = None
        self.mode = "classify"

    def inputs(self, task, items: torch.Tensor) -> torch.Tensor:
        graphs = task.graphs
        if getattr(graphs[0], "u", None) is None:
            raise HgimbError(f"model '{self.name}' reads per-crystal features; pass --features magpie "
                             f"(or chgnet, magpie+chgnet)")
        return torch.cat([graphs[i].u for i in items.tolist()], dim=0).float()

    @property
    def factory(self) -> Callable[..., Any]:
        """The classifier's factory (``factory(seed, **overrides)``)."""
        return self.factories["classify"]

    def fit(self, X, y, *, sample_weight=None, X_val=None, y_val=None, seed: int = 0) -> "FittedModel":
        self.mode = "classify"
        return self._fit(X, y, sample_weight, X_val, y_val, seed)

    def fit_values(self, X, t, *, sample_weight=None, X_val=None, t_val=None, seed: int = 0) -> "FittedModel":
        """Fit the regression form on real-valued targets ``t``; ``predict_proba`` then gives
        ``sigmoid(prediction)`` as the positive class's probability (``value-regression``)."""
        if self.factories["regress"] is None:
            raise HgimbError(f"model '{self.name}' has no regression form for a real-valued target; use "
                             "random-forest, extra-trees or hist-gb, or drop remedy 'value-regression'")
        self.mode = "regress"
        return self._fit(X, t, sample_weight, X_val, t_val, seed)

    def _fit(self, X, y, sample_weight, X_val, y_val, seed: int) -> "FittedModel":
        estimator = self.factories[self.mode](seed)
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

    def refit_on(self, X, y, *, sample_weight=None, seed: int = 0) -> "FittedModel":
        """Fit again on ``X`` (train + validation) with the settings the first fit selected; ``y``
        holds real-valued targets when the first fit was ``fit_values``."""
        estimator = self.factories[self.mode](seed, **self.selected(self.estimator))
        extra = {} if sample_weight is None else {"sample_weight": np.asarray(sample_weight)}
        from sklearn.pipeline import Pipeline

        if isinstance(estimator, Pipeline):
            extra = {f"{estimator.steps[-1][0]}__{k}": v for k, v in extra.items()}
        self.estimator = estimator.fit(np.asarray(X), np.asarray(y), **extra)
        return self

    def predict_proba(self, X) -> np.ndarray:
        if self.estimator is None:
            raise RuntimeError(f"model '{self.name}' is not fitted")  # pragma: no cover - engine order
        if self.mode == "regress":
            positive = 1.0 / (1.0 + np.exp(-np.clip(self.estimator.predict(np.asarray(X)), -50, 50)))
            return np.stack([1.0 - positive, positive], axis=1)
        return self.estimator.predict_proba(np.asarray(X))

    def get_extra_state(self):
        return {"name": self.name, "estimator": self.estimator, "mode": self.mode}

    def set_extra_state(self, state) -> None:
        self.estimator = state.get("estimator")
        self.mode = state.get("mode", "classify")

    def forward(self, X):  # pragma: no cover - fitted models are not called like modules
        raise RuntimeError(f"model '{self.name}' is a fitted model: use fit/predict_proba")


FOREST_PARAMS = (  # --model-option parameters of random-forest and extra-trees (scikit-learn's names)
    Param("n_estimators", int, 500, "trees", Range(1)),
    Param("max_features", None, "sqrt", "features tried per split",
          Rule(lambda v: v in ("sqrt", "log2", None) or (isinstance(v, float) and 0 < v <= 1)
               or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
               "sqrt, log2, none, a fraction in (0, 1] or an integer >= 1")),
    Param("min_samples_leaf", int, 1, "samples per leaf", Range(1)),
    Param("max_depth", int, None, "tree depth (none: unlimited)", Range(1), none=True),
)
HIST_GB_PARAMS = (
    Param("learning_rate", float, 0.05, "shrinkage", Range(0, low_open=True)),
    Param("max_iter", int, 1000, "boosting iterations (early-stopped on validation)", Range(1)),
    Param("max_leaf_nodes", int, 15, "leaves per tree", Range(1)),
    Param("min_samples_leaf", int, 10, "samples per leaf", Range(1)),
    Param("l2_regularization", float, 1.0, "L2 penalty on leaf values", Range(0)),
    Param("n_iter_no_change", int, 50, "early-stopping patience (iterations)", Range(1)),
    Param("max_features", float, 0.5, "share of features tried per split", Range(0, 1, low_open=True)),
)
LOGISTIC_PARAMS = (
    Param("C", float, 1.0, "inverse L2 regularisation strength", Range(0, low_open=True)),
    Param("max_iter", int, 5000, "solver iterations", Range(1)),
)
REFIT = Param("refit", bool, False, "after validation has selected (early stopping, threshold), fit again on "
              "train + validation for the test predictions")
FOREST_PARAMS, HIST_GB_PARAMS, LOGISTIC_PARAMS = (FOREST_PARAMS + (REFIT,), HIST_GB_PARAMS + (REFIT,),
                                                  LOGISTIC_PARAMS + (REFIT,))


def _split_options(cfg: ModelConfig):
    """The estimator's keyword arguments, and whether to refit on train + validation."""
    options = dict(cfg.options)
    return options, bool(options.pop("refit", False))


def _forest(kind: str):
    def build(task, cfg: ModelConfig) -> FittedModel:
        from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier,
                                      RandomForestRegressor)

        cls, reg = ((RandomForestClassifier, RandomForestRegressor) if kind == "random-forest"
                    else (ExtraTreesClassifier, ExtraTreesRegressor))
        options, refit = _split_options(cfg)
        return FittedModel(kind, lambda seed, **over: cls(**{**options, **over}, n_jobs=1, random_state=seed),
                           refit=refit,
                           regressor=lambda seed, **over: reg(**{**options, **over}, n_jobs=1, random_state=seed))

    return build


# the descriptors of the crystal leaderboard (BENCHMARKS section 2) unless --features says otherwise
TABULAR_DEFAULTS = {"features": "magpie"}
register_model("random-forest", kinds=("graph",), defaults=TABULAR_DEFAULTS, params=FOREST_PARAMS,
               help="random forest (scikit-learn, 500 trees) on per-crystal features (--features)")(_forest("random-forest"))
register_model("extra-trees", kinds=("graph",), defaults=TABULAR_DEFAULTS, params=FOREST_PARAMS,
               help="extremely randomised trees (scikit-learn, 500 trees) on per-crystal features")(_forest("extra-trees"))


@register_model("hist-gb", kinds=("graph",), defaults=TABULAR_DEFAULTS, params=HIST_GB_PARAMS,
                help="histogram gradient boosting (scikit-learn), early-stopped on validation, per-crystal features")
def build_hist_gb(task, cfg: ModelConfig) -> FittedModel:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    # early stopping on hgimb's validation split (passed as X_val): the analogue of the GNNs'
    # best-epoch selection; without one, scikit-learn's internal 10% hold-out. A refit keeps the
    # iteration count early stopping chose.
    options, refit = _split_options(cfg)

    def factory(cls):
        return lambda seed, **over: cls(**{**options, "early_stopping": True, **over}, random_state=seed)

    return FittedModel("hist-gb", factory(HistGradientBoostingClassifier), uses_validation=True, refit=refit,
                       selected=lambda est: {"max_iter": int(est.n_iter_), "early_stopping": False},
                       regressor=factory(HistGradientBoostingRegressor))


@register_model("logistic", kinds=("graph",), defaults=TABULAR_DEFAULTS, params=LOGISTIC_PARAMS,
                help="logistic regression on standardised per-crystal features (scikit-learn)")
def build_logistic(task, cfg: ModelConfig) -> FittedModel:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    options, refit = _split_options(cfg)
    return FittedModel("logistic", lambda seed, **over: Pipeline([
        ("scale", StandardScaler()), ("model", LogisticRegression(**{**options, **over}, random_state=seed))]),
        refit=refit)
