"""Crystal features (hgimb/features), fitted tabular models (hgimb/models/tabular.py,
hgimb/engine/fitted.py), the hybrid CGCNN readout and the threshold-free monitors."""
import warnings

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from conftest import real_path
from hgimb.config import RunConfig
from hgimb.data import crystal
from hgimb.data.splits import make_split
from hgimb.engine.fitted import effective_class_weights, fits_directly
from hgimb.engine.run import run_experiment, train_task
from hgimb.errors import HgimbError
from hgimb.features import feature_names
from hgimb.features.store import attach_global, drop_failed, per_structure
from hgimb.imbalance import RemedyContext, build_remedy
from hgimb.metrics import ranking_score
from hgimb.models import ModelConfig, build_model
from test_crystal import write_dir


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HGIMB_CACHE", str(tmp_path / "cache"))


def _structures(n=24):
    """n small distinct cells (NaCl-type with varying lattice constant, some with K)."""
    out = {}
    for k in range(n):
        a = 4.0 + 0.05 * k
        species = ["Na", "Cl"] if k % 3 else ["K", "Cl"]
        out[f"s{k}"] = Structure(Lattice.cubic(a), species, [[0, 0, 0], [0.5, 0.5, 0.5]])
    return out


@pytest.fixture
def crystal_task(tmp_path):
    """A 24-structure binary task (8 positives) with an informative per-crystal feature."""
    structures = _structures()
    lines = [f"s{k},{1 if k % 3 == 0 else 0}" for k in range(24)]
    d = write_dir(tmp_path / "d", structures, lines, atom_init=None)
    task = crystal.load_crystal_dir(d, name="toy")
    rng = np.random.default_rng(0)
    y = task.y.numpy()
    features = np.stack([y + 0.3 * rng.standard_normal(24), rng.standard_normal(24)], 1)
    task = attach_global(task, features, ["signal", "noise"], "toy")
    return make_split(task, split="stratified", train_fraction=0.5, test_fraction=0.25, seed=0)


def _counts_ctx(remedy, labels):
    labels = torch.as_tensor(labels)
    ctx = RemedyContext(num_classes=2, train_index=torch.arange(labels.numel()), train_labels=labels, kind="graph")
    remedy.setup(ctx)
    return remedy


def test_effective_class_weights_match_the_remedies():
    labels = [0] * 9 + [1] * 3
    assert effective_class_weights(_counts_ctx(build_remedy("none", {}), labels), 2) is None
    assert effective_class_weights(_counts_ctx(build_remedy("threshold", {}), labels), 2) is None
    w = effective_class_weights(_counts_ctx(build_remedy("pos-weight", {}), labels), 2)
    assert w[1] / w[0] == pytest.approx(3.0)  # negatives / positives
    w = effective_class_weights(_counts_ctx(build_remedy("weighted", {}), labels), 2)
    assert w[1] / w[0] == pytest.approx(3.0)  # inverse frequency


@pytest.mark.parametrize("model", ["random-forest", "extra-trees", "hist-gb", "logistic"])
@pytest.mark.parametrize("remedy", ["none", "pos-weight+threshold", "balanced-sampler", "weighted"])
def test_fitted_models_train_through_the_engine(crystal_task, model, remedy):
    options = {"n_estimators": 20} if model in ("random-forest", "extra-trees") else {}
    cfg = RunConfig(dataset="toy", model=model, remedy=remedy, model_options=options, seed=3)
    first = train_task(crystal_task, cfg)
    assert fits_directly(first.outcome.model)
    test = first.metrics["test"]
    assert test["support"] == crystal_task.split["test"].numel() and test["pr_auc"] is not None
    assert first.outcome.logits.shape == (24, 2) and torch.isfinite(first.outcome.logits).all()
    # deterministic per seed
    again = train_task(crystal_task, cfg)
    assert torch.equal(first.outcome.logits, again.outcome.logits)
    # the fitted estimator travels in the state dict (model.pt)
    state = first.outcome.model.state_dict()
    assert state["_extra_state"]["estimator"] is not None
    if remedy == "pos-weight+threshold":
        assert "threshold" in first.metrics["posthoc"]


def test_fitted_model_learns_the_signal(crystal_task):
    cfg = RunConfig(dataset="toy", model="logistic", seed=0)
    result = train_task(crystal_task, cfg)
    assert result.metrics["test"]["roc_auc"] > 0.8


def test_fitted_model_errors_are_one_line(crystal_task):
    with pytest.raises(HgimbError, match="prior-bias"):
        train_task(crystal_task, RunConfig(dataset="toy", model="random-forest", remedy="prior-bias"))
    with pytest.raises(HgimbError, match="unknown --model-option depth"):
        build_model("random-forest", crystal_task, ModelConfig(options={"depth": 3}))
    with pytest.raises(HgimbError, match="n_estimators must be an integer"):
        build_model("random-forest", crystal_task, ModelConfig(options={"n_estimators": 0}))
    bare = crystal_task.with_split(crystal_task.split)
    bare.graphs = [g.clone() for g in crystal_task.graphs]
    for g in bare.graphs:
        del g.u
    with pytest.raises(HgimbError, match="--features magpie"):
        train_task(bare, RunConfig(dataset="toy", model="hist-gb"))


def test_feature_names_registry():
    assert feature_names("default") == []
    assert feature_names("magpie+chgnet") == ["magpie", "chgnet"]
    with pytest.raises(HgimbError, match="unknown feature set 'magpi'.*did you mean 'magpie'"):
        feature_names("magpi")
    with pytest.raises(HgimbError, match="twice"):
        feature_names("magpie+magpie")


def test_per_structure_cache_computes_once_and_reports_failures(crystal_task):
    calls = []

    def compute(pairs):
        calls.append(len(pairs))
        return [{"error": "refused"} if item_id == "s4" else {"crystal": np.ones(3) * len(text)} for item_id, text in pairs]

    first = per_structure(crystal_task, "toy", 1, {}, compute, chunk_size=5)
    assert sum(calls) == 24
    second = per_structure(crystal_task, "toy", 1, {}, compute)
    assert sum(calls) == 24 and len(second) == 24  # nothing recomputed
    per_structure(crystal_task, "toy", 1, {}, compute, retry_errors=True)
    assert sum(calls) == 25  # only the failed structure again
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
    with pytest.raises(HgimbError) as info:
        drop_failed(crystal_task, second, "toy", skip_bad=False)
    assert "\n" not in str(info.value) and "id s4" in str(info.value) and "refused" in str(info.value)
    with pytest.warns(UserWarning, match="skipped 1 structure"):
        kept, results = drop_failed(crystal_task, second, "toy", skip_bad=True)
    # the dropped structure leaves its split; every other item keeps its split
    assert kept.num_items == 23 and len(results) == 23
    for part in ("train", "val", "test"):
        before = {crystal_task.item_ids[i] for i in crystal_task.split[part].tolist()} - {"s4"}
        after = {kept.item_ids[i] for i in kept.split[part].tolist()}
        assert before == after
    assert kept.meta["cif_hashes"] == [h for h, i in zip(crystal_task.meta["cif_hashes"], crystal_task.item_ids) if i != "s4"]


@pytest.mark.parametrize("name, options, out_dim", [("cgcnn", {"fc_hidden": 32}, 40), ("gat", {}, 16)])
def test_crystal_gnn_hybrid_readout(crystal_task, name, options, out_dim):
    from torch_geometric.data import Batch

    cfg = ModelConfig(hidden=16, layers=2, heads=2, dropout=0.0, options={**options, "global_hidden": 8})
    model = build_model(name, crystal_task, cfg)
    assert model.out_dim == out_dim and model.global_fc.in_features == 2
    plain = build_model(name, crystal_task, ModelConfig(hidden=16, layers=2, heads=2, options={"globals": "none"}))
    assert plain.global_fc is None
    model.eval()
    graphs = crystal_task.graphs
    with torch.no_grad():
        together = model(Batch.from_data_list(graphs[:6]))
        alone = torch.cat([model(Batch.from_data_list([g])) for g in graphs[:6]])
        # the descriptors reach the output
        changed = [g.clone() for g in graphs[:6]]
        for g in changed:
            g.u = g.u + 5.0
        moved = model(Batch.from_data_list(changed))
    assert torch.allclose(together, alone, atol=1e-5)
    assert not torch.allclose(together, moved)


def test_ranking_monitor(crystal_task):
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.8, 0.3, 0.2, 0.9, 0.4])
    assert ranking_score(y, s, "pr_auc") == pytest.approx(average_precision_score(y, s))
    assert ranking_score(y, s, "roc_auc") == pytest.approx(roc_auc_score(y, s))
    assert ranking_score(np.zeros(3, int), s[:3], "pr_auc") == 0.0
    cfg = RunConfig(dataset="toy", model="cgcnn", monitor="pr_auc", epochs=2, hidden=8, layers=1, batch_size=8)
    result = train_task(crystal_task, cfg)
    assert "val_pr_auc" in result.outcome.history[0]
    with pytest.raises(HgimbError, match="binary task"):
        run_experiment(RunConfig(dataset="synthetic", model="mlp", monitor="roc_auc", epochs=1,
                                 dataset_options={"num_movies": 60}), write=False)


def test_real_magpie_and_chgnet_features_on_cgcnn_sample(tmp_path):
    pytest.importorskip("matminer")
    pytest.importorskip("chgnet")
    root = real_path("crystals", "cgcnn-sample").parents[1]
    cfg = RunConfig(dataset="cgcnn-sample", model="random-forest", features="magpie+chgnet", data_root=str(root),
                    split="stratified", train_fraction=0.6, test_fraction=0.2, remedy="pos-weight+threshold",
                    model_options={"n_estimators": 10}, quiet=True, out=str(tmp_path / "run"), plots=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_experiment(cfg)
    graph = result.task.graphs[0]
    assert graph.u.shape == (1, 149 + 64)  # magpie + CHGNet crystal embedding
    assert graph.x.shape[1] == 92 + 64  # atom_init + CHGNet atom embedding
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "run" / "metrics.json").is_file()
    assert result.task.meta["global_features"][0].startswith("magpie:")


def test_element_fractions_on_cgcnn_sample(tmp_path):
    """``fractions``: each crystal's atomic fractions of the 118 elements, in element order, equal to
    the composition pymatgen reads from the CIF; concatenated after magpie in ``u``."""
    pytest.importorskip("matminer")
    from pymatgen.core import Element, Structure

    root = real_path("crystals", "cgcnn-sample").parents[1]
    cfg = RunConfig(dataset="cgcnn-sample", model="random-forest", features="magpie+fractions", data_root=str(root),
                    split="stratified", train_fraction=0.6, test_fraction=0.2, model_options={"n_estimators": 10},
                    quiet=True, plots=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = run_experiment(cfg, write=False).task
    names = task.meta["global_features"]
    assert len(names) == 149 + 118 and names[149] == "fractions:H" and names[-1] == "fractions:Og"
    for k in (0, len(task.graphs) // 2, len(task.graphs) - 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            composition = Structure.from_file(task.meta["cif_paths"][k]).composition.fractional_composition
        expected = np.zeros(118)
        for element, amount in composition.get_el_amt_dict().items():
            expected[Element(element).Z - 1] = amount
        got = task.graphs[k].u[0, 149:].double().numpy()
        assert np.allclose(got, expected, atol=1e-6) and abs(got.sum() - 1) < 1e-5


def test_diagnose_thresholds_table(tmp_path, capsys):
    from hgimb.diagnose import main, parse_thresholds, threshold_table

    rows = threshold_table(np.array([10.0, 400, 700, 900, 50, 20]), [300, 800, 1000])
    assert [(r["negatives"], r["positives"]) for r in rows] == [(3, 3), (5, 1), (6, 0)]
    assert rows[0]["imbalance_ratio"] == 1.0 and rows[1]["imbalance_ratio"] == 5.0 and rows[2]["imbalance_ratio"] is None
    assert rows[1]["pos_weight"] == 5.0 and rows[2]["severity"] == "severe"
    with pytest.raises(HgimbError, match="comma-separated numbers"):
        parse_thresholds("300,hot")
    structures = _structures(6)
    d = write_dir(tmp_path / "d", structures, [f"s{k},{v}" for k, v in enumerate([10.5, 400, 700, 900, 50, 20])],
                  atom_init=None)
    assert main([f"crystal:{d}", "--thresholds", "300,800"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "6 samples" in out[0] and len(out) == 4
    assert out[2].split()[:5] == ["300", "3", "3", "50.0%", "1.0:1"]
    assert out[3].split()[:5] == ["800", "5", "1", "16.7%", "5.0:1"]
    assert main([f"crystal:{d}", "--thresholds", "300", "--threshold", "5"]) == 2


@pytest.mark.parametrize("model", ["random-forest", "hist-gb", "logistic"])
def test_refit_on_train_and_validation(crystal_task, model):
    """refit=true: validation outputs and the threshold stay the first model's; test is scored by
    an estimator fitted on train + validation with what validation selected."""
    options = {"n_estimators": 20} if model == "random-forest" else {}
    base = RunConfig(dataset="toy", model=model, remedy="pos-weight+threshold", model_options=options, seed=1)
    refit = RunConfig(dataset="toy", model=model, remedy="pos-weight+threshold",
                      model_options={**options, "refit": True}, seed=1)
    first, second = train_task(crystal_task, base), train_task(crystal_task, refit)
    n_tv = crystal_task.split["train"].numel() + crystal_task.split["val"].numel()
    assert torch.equal(first.outcome.logits[:n_tv], second.outcome.logits[:n_tv])
    assert first.metrics["posthoc"] == second.metrics["posthoc"]
    est = second.outcome.model.estimator
    n_fit = est.n_features_in_ if hasattr(est, "n_features_in_") else est[-1].n_features_in_
    assert n_fit == 2
    # the refit estimator saw train + validation: refit it by hand and compare its test outputs
    both = torch.cat([crystal_task.split["train"], crystal_task.split["val"]])
    X = second.outcome.model.inputs(crystal_task, both).numpy()
    y = crystal_task.y[both].numpy()
    hand = second.outcome.model.factory(1, **second.outcome.model.selected(first.outcome.model.estimator))
    w = np.where(y == 1, (y == 0).sum() / (y == 1).sum(), 1.0)
    step = {"sample_weight": w / w.mean()}
    if model == "logistic":
        step = {"model__sample_weight": w / w.mean()}
    hand.fit(X, y, **step)
    test_X = second.outcome.model.inputs(crystal_task, crystal_task.split["test"]).numpy()
    expected = np.log(np.clip(hand.predict_proba(test_X), 1e-7, 1.0))
    np.testing.assert_allclose(second.outcome.logits[n_tv:].numpy(), expected, rtol=1e-6, atol=1e-6)
    if model == "hist-gb":  # the early-stopped iteration count, no early stopping in the refit
        assert est.max_iter == first.outcome.model.estimator.n_iter_ and est.early_stopping is False


def test_refit_refuses_sampling_remedies(crystal_task):
    cfg = RunConfig(dataset="toy", model="random-forest", remedy="balanced-sampler",
                    model_options={"n_estimators": 10, "refit": True})
    with pytest.raises(HgimbError, match="refit"):
        train_task(crystal_task, cfg)
