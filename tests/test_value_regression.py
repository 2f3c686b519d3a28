"""Remedy ``value-regression`` (hgimb/imbalance/regression.py): training on the real value behind
a thresholded label, for GNNs (logit difference regresses the scaled value) and for fitted
tabular models (their regression form, ``fit_values``)."""
import numpy as np
import pytest
import torch

from hgimb.config import RunConfig
from hgimb.data import crystal
from hgimb.data.splits import make_split
from hgimb.engine.run import train_task
from hgimb.errors import HgimbError
from hgimb.features.store import attach_global
from hgimb.imbalance import BatchContext, RemedyContext, build_remedy
from hgimb.imbalance.regression import value_targets
from test_crystal import write_dir
from test_crystal_features import _structures

THRESHOLD = 1000.0


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HGIMB_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def valued_task(tmp_path):
    """24 structures with real targets 60 k + noise (positives: value > 1000) and a per-crystal
    feature that tracks the value."""
    rng = np.random.default_rng(0)
    values = 60.0 * np.arange(24) + rng.uniform(0, 20, 24)
    d = write_dir(tmp_path / "d", _structures(), [f"s{k},{v:.3f}" for k, v in enumerate(values)], atom_init=None)
    task = crystal.load_crystal_dir(d, name="valued", threshold=THRESHOLD)
    raw = task.meta["raw_target"]
    features = np.stack([raw / 1000.0 + 0.05 * rng.standard_normal(24), rng.standard_normal(24)], 1)
    task = attach_global(task, features, ["signal", "noise"], "toy")
    return make_split(task, split="stratified", train_fraction=0.5, test_fraction=0.25, seed=0)


def _setup(task, spec="value-regression", params=None):
    remedy = build_remedy(spec, params or {})
    remedy.setup(RemedyContext.for_task(task))
    return remedy


def test_targets_are_the_scaled_value_from_training_statistics(valued_task):
    raw, train = valued_task.meta["raw_target"], valued_task.split["train"].numpy()
    remedy = _setup(valued_task)
    expected = (raw - THRESHOLD) / raw[train].std()
    np.testing.assert_allclose(remedy.values(torch.arange(24)).numpy(), expected, rtol=1e-5)
    # the sign of the target is the class
    assert ((remedy.values(torch.arange(24)) > 0).long() == valued_task.y).all()
    logged = _setup(valued_task, params={"transform": "log"})
    expected = (np.log1p(raw) - np.log1p(THRESHOLD)) / np.log1p(raw[train]).std()
    np.testing.assert_allclose(logged.values(torch.arange(24)).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(value_targets(raw, THRESHOLD, train, "none"), (raw - THRESHOLD) / raw[train].std())


def test_loss_regresses_the_logit_difference_of_the_step_rows(valued_task):
    remedy = _setup(valued_task)
    items = torch.tensor([3, 0, 17, 3])
    logits = torch.randn(4, 2)
    remedy.batch(BatchContext(items, 0))
    t = remedy.values(items)
    expected = ((logits[:, 1] - logits[:, 0] - t) ** 2).mean()
    assert torch.allclose(remedy.loss(logits, valued_task.y[items], 0), expected)
    # with a weighting remedy: each row weighs its class weight
    weighted = _setup(valued_task, "weighted+value-regression")
    weighted.batch(BatchContext(items, 0))
    w = weighted.ctx.class_weight[valued_task.y[items]]
    expected = (w * (logits[:, 1] - logits[:, 0] - t) ** 2).sum() / w.sum()
    assert torch.allclose(weighted.loss(logits, valued_task.y[items], 0), expected)
    # rows the remedy cannot name (synthesis) are refused
    with pytest.raises(HgimbError, match="measured value"):
        remedy.loss(torch.randn(6, 2), torch.zeros(6, dtype=torch.long), 0)


def test_gnn_trains_on_the_value_and_is_deterministic(valued_task):
    cfg = RunConfig(dataset="valued", model="cgcnn", remedy="value-regression+threshold", epochs=3, hidden=8,
                    layers=1, batch_size=8, seed=2, monitor="pr_auc")
    first, again = train_task(valued_task, cfg), train_task(valued_task, cfg)
    assert torch.equal(first.outcome.logits, again.outcome.logits)
    assert torch.isfinite(first.outcome.logits).all() and "threshold" in first.metrics["posthoc"]
    with pytest.raises(HgimbError, match="measured value"):
        train_task(valued_task, RunConfig(dataset="valued", model="cgcnn", remedy="value-regression+smote",
                                          epochs=1, hidden=8, layers=1, batch_size=8))


@pytest.mark.parametrize("model", ["random-forest", "extra-trees", "hist-gb"])
def test_fitted_models_fit_their_regression_form(valued_task, model):
    from sklearn.base import is_regressor

    options = {"n_estimators": 30} if model != "hist-gb" else {"min_samples_leaf": 2}
    cfg = RunConfig(dataset="valued", model=model, remedy="value-regression+threshold", model_options=options, seed=1)
    result = train_task(valued_task, cfg)
    fitted = result.outcome.model
    assert is_regressor(fitted.estimator) and fitted.mode == "regress"
    # log p of the positive class is log sigmoid(prediction)
    X = fitted.inputs(valued_task, torch.arange(24)).numpy()
    s = fitted.estimator.predict(X)
    order = torch.cat([valued_task.split[p] for p in ("train", "val", "test")])
    p1 = 1 / (1 + np.exp(-s[order.numpy()]))
    np.testing.assert_allclose(result.outcome.logits[:, 1].exp().numpy(), np.clip(p1, 1e-7, 1), rtol=1e-5, atol=1e-6)
    assert result.metrics["test"]["roc_auc"] > 0.8  # the feature tracks the value
    assert torch.equal(result.outcome.logits, train_task(valued_task, cfg).outcome.logits)
    # the mode travels with the saved state
    state = fitted.state_dict()["_extra_state"]
    assert state["mode"] == "regress"


def test_refit_fits_the_values_of_train_and_validation(valued_task):
    from sklearn.ensemble import RandomForestRegressor

    cfg = RunConfig(dataset="valued", model="random-forest", remedy="value-regression+threshold", seed=4,
                    model_options={"n_estimators": 25, "refit": True})
    result = train_task(valued_task, cfg)
    both = torch.cat([valued_task.split["train"], valued_task.split["val"]])
    model = result.outcome.model
    remedy = _setup(valued_task)
    hand = RandomForestRegressor(n_estimators=25, max_features="sqrt", n_jobs=1, random_state=4).fit(
        model.inputs(valued_task, both).numpy(), remedy.values(both).numpy())
    test_X = model.inputs(valued_task, valued_task.split["test"]).numpy()
    n_tv = both.numel()
    expected = 1 / (1 + np.exp(-hand.predict(test_X)))
    np.testing.assert_allclose(result.outcome.logits[n_tv:, 1].exp().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_refusals_are_one_line(valued_task, tmp_path):
    with pytest.raises(HgimbError, match="no regression form"):
        train_task(valued_task, RunConfig(dataset="valued", model="logistic", remedy="value-regression"))
    with pytest.raises(HgimbError, match="synthetic rows"):
        train_task(valued_task, RunConfig(dataset="valued", model="random-forest", remedy="value-regression+smote",
                                          model_options={"n_estimators": 5}))
    labelled = write_dir(tmp_path / "labels", _structures(), [f"s{k},{k % 3 == 0:d}" for k in range(24)],
                         atom_init=None)
    task = make_split(crystal.load_crystal_dir(labelled, name="labels"), split="stratified", seed=0)
    with pytest.raises(HgimbError, match="real-valued target by --threshold"):
        _setup(task)
    negative = valued_task.with_split(valued_task.split)
    negative.meta = {**valued_task.meta, "raw_target": valued_task.meta["raw_target"] - 5000.0}
    with pytest.raises(HgimbError, match="transform=log"):
        _setup(negative, params={"transform": "log"})
    with pytest.raises(HgimbError, match="transform"):
        build_remedy("value-regression", {"transform": "sqrt"})
