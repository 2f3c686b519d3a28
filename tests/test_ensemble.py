"""Model ensembles (``--model a+b``, hgimb/engine/ensemble.py): members, options, seeds, the
soft vote, the post-hoc refit on the ensemble's validation logits, and the CLI's errors."""
import json

import numpy as np
import pytest
import torch

from hgimb.config import RunConfig
from hgimb.engine.ensemble import combine, member_configs
from hgimb.engine.run import train_task
from hgimb.errors import HgimbError
from hgimb.models.registry import check_members, member_options, model_defaults, model_members
from test_crystal_features import crystal_task, private_cache  # noqa: F401  (fixtures)

CGCNN = dict(epochs=3, patience=3, hidden=8, layers=1, batch_size=8, lr=0.01, monitor="pr_auc")


def test_members_and_their_errors():
    assert model_members("cgcnn") == ["cgcnn"]
    assert model_members("cgcnn + random-forest") == ["cgcnn", "random-forest"]
    with pytest.raises(HgimbError, match="one of its names is empty"):
        model_members("cgcnn+")
    with pytest.raises(HgimbError, match="unknown model 'randomforest'.*random-forest"):
        check_members("cgcnn+randomforest", "graph")
    with pytest.raises(HgimbError, match="model 'random-forest' does not handle node tasks"):
        check_members("rgcn+random-forest", "node")


def test_options_go_to_the_members_that_declare_them():
    opts = member_options("cgcnn+random-forest", "graph", {"refit": True, "pool": "max"})
    assert opts == [{"pool": "max"}, {"refit": True}]
    with pytest.raises(HgimbError, match="--model-option depth: declared by none of the models cgcnn, random-forest"):
        member_options("cgcnn+random-forest", "graph", {"depth": 3})


def test_member_seeds_and_defaults():
    cfg = RunConfig(dataset="toy", model="cgcnn+cgcnn+random-forest", seed=7)
    assert [(c.model, c.seed) for c in member_configs(cfg, "graph")] == [("cgcnn", 7), ("cgcnn", 8), ("random-forest", 7)]
    # the GNN member's recommended settings apply to the ensemble's run
    assert model_defaults("cgcnn+random-forest")["lr"] == model_defaults("cgcnn")["lr"]
    assert RunConfig.from_dict({"dataset": "toy", "model": "random-forest+cgcnn"}).lr == model_defaults("cgcnn")["lr"]


def test_soft_vote_and_posthoc_refit(crystal_task):  # noqa: F811
    runs = {name: train_task(crystal_task, RunConfig(dataset="toy", model=name, remedy="threshold", seed=1,
                                                     model_options=opts, **CGCNN))
            for name, opts in (("cgcnn", {}), ("random-forest", {"n_estimators": 20}))}
    cfg = RunConfig(dataset="toy", model="cgcnn+random-forest", remedy="threshold", seed=1,
                    model_options={"n_estimators": 20}, **CGCNN)
    result = train_task(crystal_task, cfg)
    out = result.outcome
    expected = torch.stack([torch.softmax(r.outcome.logits.double(), 1) for r in runs.values()]).mean(0)
    assert torch.allclose(torch.softmax(out.logits.double(), 1), expected, atol=1e-6)
    # each member equals its own single-model run (same seed, same split)
    members = result.metrics["members"]
    assert [m["model"] for m in members] == ["cgcnn", "random-forest"]
    for member, run in zip(members, runs.values()):
        assert member["test"]["pr_auc"] == pytest.approx(run.metrics["test"]["pr_auc"])
    # the threshold is fitted on the ensemble's validation logits, not taken from a member
    n_train, n_val = crystal_task.split["train"].numel(), crystal_task.split["val"].numel()
    refit = out.remedy.parts[0]
    fresh = type(refit)(**refit.p)
    fresh.setup(refit.ctx)
    assert fresh.adjust(out.logits[n_train:n_train + n_val], crystal_task.y[crystal_task.split["val"]]) == \
        result.metrics["posthoc"]["threshold"]
    assert out.train_seconds == pytest.approx(sum(m["train_seconds"] for m in members), abs=1e-3)
    # deterministic per seed
    again = train_task(crystal_task, cfg)
    assert torch.equal(again.outcome.logits, out.logits)


def test_combine_averages_probabilities(crystal_task):  # noqa: F811
    from hgimb.engine.trainer import TrainOutcome
    from hgimb.imbalance import build_remedy

    n = 24
    items = torch.cat([crystal_task.split[p] for p in ("train", "val", "test")])
    a, b = torch.randn(n, 2), torch.randn(n, 2)
    outcomes = [TrainOutcome(model=torch.nn.Linear(1, 1), remedy=build_remedy("none"), history=[{"epoch": 0}],
                             best_epoch=0, epochs_run=1, train_seconds=1.0, logits=z, adjusted_logits=z, items=items)
                for z in (a, b)]
    out = combine(crystal_task, outcomes)
    mean = (torch.softmax(a.double(), 1) + torch.softmax(b.double(), 1)) / 2
    assert np.allclose(out.logits.exp().numpy(), mean.numpy(), atol=1e-6)
    assert out.fitted == {} and torch.equal(out.adjusted_logits, out.logits) and out.train_seconds == 2.0


def test_cli_refuses_a_bad_member_before_training(tmp_path, capsys):
    from hgimb.train import main

    code = main(["--dataset", "synthetic", "--model", "rgcn+nosuchmodel", "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown model 'nosuchmodel'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_cli_ensemble_on_a_node_task(tmp_path, capsys):
    from hgimb.train import main

    out = tmp_path / "run"
    code = main(["--dataset", "synthetic", "--dataset-option", "num_movies=300", "--model", "rgcn+rgcn",
                 "--epochs", "2", "--hidden", "8", "--out", str(out), "--quiet", "--no-plots"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "rgcn+rgcn" and [m["seed"] for m in metrics["members"]] == [0, 1]
    assert "member rgcn (seed 1), test:" in capsys.readouterr().out
