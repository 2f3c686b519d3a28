"""DGL-backed models (dgl-rgcn, dgl-gat): same maths as hgimb's PyG rgcn / gat, and usable
through the trainer, remedies, mini-batch training and the bench runner. Skipped without DGL."""
import os

import pytest
import torch

from hgimb.errors import HgimbError

os.environ.setdefault("DGLBACKEND", "pytorch")
try:
    from hgimb.data.dgl_io import import_dgl

    import_dgl("tests/test_dgl_models.py")
except HgimbError as _exc:  # the reason says how to install it
    pytest.skip(str(_exc), allow_module_level=True)

from hgimb.config import RunConfig  # noqa: E402
from hgimb.data import load_dataset  # noqa: E402
from hgimb.engine import run_experiment  # noqa: E402
from hgimb.models import ModelConfig, build_model  # noqa: E402


@pytest.fixture(scope="module")
def task():
    t = load_dataset("synthetic", num_movies=120, seed=3)
    return t


def _weighted(task):
    """The synthetic graph with positive edge weights on two relations (the weighted-mean path)."""
    new = task.with_split(task.split)
    new.data = task.data.clone()
    g = torch.Generator().manual_seed(0)
    for et in list(new.data.edge_types)[:2]:
        m = new.data[et].edge_index.size(1)
        new.data[et].edge_weight = torch.rand(m, generator=g) + 0.1
    return new


@pytest.mark.parametrize("weighted", [False, True])
def test_dgl_rgcn_matches_rgcn_with_the_same_weights(task, weighted):
    t = _weighted(task) if weighted else task
    torch.manual_seed(0)
    ref = build_model("rgcn", t, ModelConfig(hidden=16, layers=2)).eval()
    dgl_model = build_model("dgl-rgcn", t, ModelConfig(hidden=16, layers=2)).eval()
    assert dgl_model.graphs.weighted == weighted
    with torch.no_grad():
        dgl_model.input.load_state_dict(ref.input.state_dict())
        dgl_model.head.load_state_dict(ref.head.state_dict())
        for conv, skip, ref_conv in zip(dgl_model.convs, dgl_model.skips, ref.convs):
            for i, t_name in enumerate(ref_conv.node_types):
                skip[t_name].weight.copy_(ref_conv.root[i].t())
                skip[t_name].bias.copy_(ref_conv.bias[i])
            for r, key in enumerate(dgl_model.graphs.keys):
                conv.mods[key].weight.copy_(ref_conv.weight[r])
    out_ref, out = ref(t.data), dgl_model(t.data)
    assert out.shape == out_ref.shape == (t.num_items, t.num_classes)
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)


def test_dgl_gat_matches_gat_with_the_same_weights(task):
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=16, layers=2, heads=4)
    ref = build_model("gat", task, cfg).eval()
    dgl_model = build_model("dgl-gat", task, cfg).eval()
    names = {"att_src": "attn_l", "att_dst": "attn_r", "bias": "bias", "lin.weight": "fc.weight",
             "lin_src.weight": "fc_src.weight", "lin_dst.weight": "fc_dst.weight"}
    with torch.no_grad():
        dgl_model.input.load_state_dict(ref.input.state_dict())
        dgl_model.head.load_state_dict(ref.head.state_dict())
        for conv, skip, ref_conv, ref_skip in zip(dgl_model.convs, dgl_model.skips, ref.convs, ref.skips):
            skip.load_state_dict(ref_skip.state_dict())
            # HeteroConv keeps its relations in the graph's edge-type order, as graphs.keys
            assert len(ref_conv.convs) == len(dgl_model.graphs.keys)
            for key, ref_rel in zip(dgl_model.graphs.keys, ref_conv.convs.values()):
                params = dict(conv.mods[key].named_parameters())
                for name, value in ref_rel.named_parameters():
                    params[names[name]].copy_(value)
    torch.testing.assert_close(dgl_model(task.data), ref(task.data), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["dgl-rgcn", "dgl-gat"])
def test_dgl_models_train_deterministically_with_remedies(model, tmp_path):
    def run(remedy, **extra):
        cfg = RunConfig(dataset="synthetic", dataset_options={"num_movies": 150}, model=model, remedy=remedy,
                        epochs=3, patience=3, hidden=16, heads=2, imbalance_ratio=5, seed=1, quiet=True, **extra)
        return run_experiment(cfg, write=False).metrics

    a, b = run("none"), run("none")
    assert a["test"]["macro_f1"] == b["test"]["macro_f1"]
    assert a["val"]["roc_auc_macro"] == b["val"]["roc_auc_macro"]
    # loss, sampler, embedding-space synthesis, post-hoc and graph remedies all go through encode/head
    for remedy in ("balanced-softmax", "balanced-sampler", "graphens", "logit-adjusted", "tam"):
        metrics = run(remedy)
        assert 0.0 <= metrics["test"]["macro_f1"] <= 1.0 and metrics["epochs_run"] == 3
    # mini-batch training: sampled subgraphs become DGL graphs too (seed rows first)
    metrics = run("weighted", batch_size=64, fanout="5,5")
    assert metrics["epochs_run"] == 3


def test_dgl_models_in_the_bench_runner(tmp_path):
    from hgimb.benchkit import load_results, run_grid

    configs = [RunConfig(dataset="synthetic", dataset_options={"num_movies": 120}, model=m, epochs=2, patience=2,
                         hidden=8, heads=2, seed=0, quiet=True) for m in ("rgcn", "dgl-rgcn")]
    run_grid(configs, tmp_path / "store", workers=1, quiet=True, echo=lambda *_: None)
    frame = load_results(tmp_path / "store")
    assert sorted(frame["model"]) == ["dgl-rgcn", "rgcn"]
    assert set(frame["status"]) == {"ok"}
