"""DGL conversions (Task <-> DGL heterograph) and the dgl:<file> dataset prefix. Skipped without DGL
(the skip reason says how to install it)."""
import os

import pytest
import torch

from hgimb.errors import HgimbError

os.environ.setdefault("DGLBACKEND", "pytorch")
try:
    from hgimb.data.dgl_io import import_dgl

    dgl = import_dgl("tests/test_dgl_io.py")
except HgimbError as _exc:
    pytest.skip(str(_exc), allow_module_level=True)

from hgimb.config import RunConfig  # noqa: E402
from hgimb.data import from_dgl, load_dataset, to_dgl  # noqa: E402
from hgimb.data.dgl_io import save_dgl  # noqa: E402
from hgimb.data.splits import make_split  # noqa: E402
from hgimb.engine import run_experiment  # noqa: E402

from conftest import real_path  # noqa: E402


def assert_same_task(a, b):
    """Same graph, features, labels, split and edge data, compared per node / edge type (DGL
    orders types by name)."""
    assert sorted(a.data.node_types) == sorted(b.data.node_types)
    assert sorted(a.data.edge_types) == sorted(b.data.edge_types)
    assert a.target_types == b.target_types and list(a.class_names) == list(b.class_names)
    for t in a.data.node_types:
        assert a.data[t].num_nodes == b.data[t].num_nodes
        xa, xb = getattr(a.data[t], "x", None), getattr(b.data[t], "x", None)
        assert (xa is None) == (xb is None)
        if xa is not None:
            assert torch.equal(xa, xb)
    for et in a.data.edge_types:
        sa, sb = a.data[et], b.data[et]
        assert sorted(k for k in sa.keys()) == sorted(k for k in sb.keys())
        for key in sa.keys():
            assert torch.equal(sa[key], sb[key]), (et, key)  # DGL keeps edge order (eid)
    assert torch.equal(a.y, b.y)
    assert set(a.split) == set(b.split)
    for part in a.split:
        assert torch.equal(a.split[part], b.split[part])


def assert_same_graph(g, h):
    assert g.ntypes == h.ntypes and g.canonical_etypes == h.canonical_etypes
    for t in g.ntypes:
        assert g.num_nodes(t) == h.num_nodes(t)
        assert sorted(g.nodes[t].data.keys()) == sorted(h.nodes[t].data.keys())
        for key, value in g.nodes[t].data.items():
            other = h.nodes[t].data[key]
            assert torch.equal(value.to(other.dtype), other), (t, key)
    for et in g.canonical_etypes:
        assert all(torch.equal(u, v) for u, v in zip(g.edges(etype=et), h.edges(etype=et)))
        for key, value in g.edges[et].data.items():
            assert torch.equal(value, h.edges[et].data[key]), (et, key)


def _with_edge_data(task):
    """The task with an edge weight on one relation and 3-dim edge features on another."""
    new = task.with_split(task.split)
    new.data = task.data.clone()
    first, second = list(new.data.edge_types)[:2]
    m1, m2 = new.data[first].edge_index.size(1), new.data[second].edge_index.size(1)
    new.data[first].edge_weight = torch.linspace(0.1, 3.0, m1)
    new.data[second].edge_attr = torch.arange(m2 * 3, dtype=torch.float32).view(m2, 3)
    return new


@pytest.mark.parametrize("name", ["freebase", "acm"])
def test_round_trip_on_real_hgb_data(name, tmp_path):
    real_path("hgb", f"{name.capitalize() if name == 'freebase' else name.upper()}.zip")
    task = _with_edge_data(make_split(load_dataset(name), split="official", seed=0))  # official split + val
    g = to_dgl(task)
    assert set(g.ntypes) == set(task.data.node_types) and len(g.canonical_etypes) == len(task.data.edge_types)
    t = task.target_types[0]
    assert int(g.nodes[t].data["train_mask"].sum()) == task.split["train"].numel()
    # Task -> DGL -> Task
    assert_same_task(task, from_dgl(g, class_names=task.class_names, name=name))
    # DGL -> Task -> DGL, and through a file (dgl.save_graphs / the dgl: prefix)
    assert_same_graph(g, to_dgl(from_dgl(g)))
    path = save_dgl(task, tmp_path / f"{name}.bin")
    back = load_dataset(f"dgl:{path}")
    assert back.name == f"dgl:{path}" and back.class_names == [f"class{c}" for c in range(task.num_classes)]
    assert torch.equal(back.y, task.y)


def test_a_users_dgl_graph_trains_with_hgimb(tmp_path):
    """A graph built in DGL (user field names, no val mask, unlabelled nodes) saved with
    dgl.save_graphs trains through the CLI with an official split and with a long-tailed one."""
    g = dgl.heterograph({
        ("user", "follows", "user"): (torch.arange(0, 59), torch.arange(1, 60)),
        ("user", "clicks", "item"): (torch.arange(60) % 60, torch.arange(60) % 20),
        ("item", "clicked_by", "user"): (torch.arange(60) % 20, torch.arange(60) % 60),
    })
    gen = torch.Generator().manual_seed(0)
    g.nodes["user"].data["h"] = torch.randn(60, 5, generator=gen)
    label = torch.arange(60) % 3
    label[::10] = -1  # unlabelled
    g.nodes["user"].data["y"] = label
    g.nodes["user"].data["train_mask"] = (torch.arange(60) < 40) & (label >= 0)
    g.nodes["user"].data["test_mask"] = (torch.arange(60) >= 40) & (label >= 0)
    g.edges["clicks"].data["weight"] = torch.rand(60, generator=gen) + 0.5
    path = tmp_path / "user_graph.bin"
    dgl.save_graphs(str(path), [g])
    options = {"feature_key": "h", "label_key": "y"}
    task = load_dataset(f"dgl:{path}", **options)
    assert task.target_types == ["user"] and task.data["user"].x.shape == (60, 5) and "x" not in task.data["item"]
    assert task.split["val"].numel() == 0 and task.meta["official_split"]
    assert task.data["user", "clicks", "item"].edge_weight.shape == (60,)
    for model, extra in (("dgl-rgcn", {}), ("rgcn", {"imbalance_ratio": 3, "split": "stratified"})):
        cfg = RunConfig(dataset=f"dgl:{path}", dataset_options=options, model=model, epochs=2, patience=2, hidden=8,
                        seed=0, quiet=True, **extra)
        metrics = run_experiment(cfg, write=False).metrics
        assert metrics["epochs_run"] == 2 and sum(metrics["split"]["sizes"].values()) <= 54
    from hgimb.train import main

    assert main(["--dataset", f"dgl:{path}", "--dataset-option", "feature_key=h", "--dataset-option", "label_key=y",
                 "--model", "dgl-gat", "--heads", "2", "--hidden", "8", "--epochs", "2", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0


def test_homogeneous_dgl_graph(tmp_path):
    g = dgl.graph((torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 0])))
    g.ndata["feat"] = torch.eye(4)
    g.ndata["label"] = torch.tensor([0, 1, 0, 1])
    task = from_dgl(g)
    assert task.target_types == ["_N"] and task.data.edge_types == [("_N", "_E", "_N")] and task.split == {}
    assert_same_graph(g, to_dgl(task))


def _file(tmp_path, g, name="g.bin"):
    dgl.save_graphs(str(tmp_path / name), [g])
    return f"dgl:{tmp_path / name}"


def test_bad_input_gets_one_line_errors(tmp_path):
    def graph(label):
        g = dgl.graph((torch.tensor([0, 1]), torch.tensor([1, 2])))
        g.ndata["label"] = label
        return g

    cases = [
        (lambda: load_dataset(f"dgl:{tmp_path / 'absent.bin'}"), "not found"),
        (lambda: (tmp_path / "junk.bin").write_bytes(b"not a graph") and load_dataset(f"dgl:{tmp_path / 'junk.bin'}"),
         "not a file written by dgl.save_graphs"),
        (lambda: load_dataset(_file(tmp_path, graph(torch.tensor([0.0, 1.5, 1.0])))), "node 1 of type '_N' has label 1.5"),
        (lambda: load_dataset(_file(tmp_path, graph(torch.tensor([0, -4, 1])))), "node 1 of type '_N' has label -4"),
        (lambda: load_dataset(_file(tmp_path, graph(torch.zeros(3, 2)))), "multi-label"),
        (lambda: load_dataset(_file(tmp_path, graph(torch.tensor([0, 1, 1]))), label_key="cls"), "ndata['cls']"),
        (lambda: load_dataset(_file(tmp_path, graph(torch.tensor([0, 1, 1]))), target="paper"), "target node type 'paper'"),
        (lambda: load_dataset(_file(tmp_path, graph(torch.tensor([0, 1, 1]))), colour="red"), "unknown --dataset-option colour"),
        (lambda: load_dataset(_file(tmp_path, graph(torch.tensor([0, 1, 1]))), graph_index="3"), "graph_index=3"),
    ]
    for call, words in cases:
        with pytest.raises(HgimbError) as info:
            call()
        assert words in str(info.value) and "\n" not in str(info.value)
    g = graph(torch.tensor([0, -1, 1]))
    g.ndata["train_mask"] = torch.tensor([True, True, False])
    with pytest.raises(HgimbError, match="node 1 of type '_N' is in train_mask but has no label"):
        from_dgl(g)
