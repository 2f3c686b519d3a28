"""NetworkX interop: from_networkx / to_networkx, the nx:<file> prefix (GraphML, GEXF, edge list +
node table), training every fitting model and remedy, and one-line errors for bad input."""
import networkx as nx
import numpy as np
import pytest
import torch

from hgimb.config import RunConfig
from hgimb.data import from_networkx, load_dataset, to_networkx
from hgimb.data.splits import make_split
from hgimb.engine import run_experiment
from hgimb.errors import HgimbError
from hgimb.imbalance import REMEDIES
from hgimb.models.registry import models_for

from conftest import real_path


def _dgl_available() -> bool:
    try:
        from hgimb.data.dgl_io import import_dgl

        import_dgl()
        return True
    except HgimbError:
        return False


def _karate():
    G = nx.karate_club_graph()
    for n, d in G.nodes(data=True):
        d["y"] = d.pop("club")  # class names: 'Mr. Hi' / 'Officer'
        d["x"] = f"{n % 3},{n % 5}"
        d.pop("name", None)
    for _, _, d in G.edges(data=True):
        d.pop("weight", None)
    return G


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("nx")
    hetero = to_networkx(load_dataset("synthetic", num_movies=120, seed=3), features_as_string=True)
    nx.write_graphml(hetero, root / "hetero.graphml")
    nx.write_graphml(_karate(), root / "karate.graphml")
    return root


def assert_same_task(a, b):
    assert sorted(a.data.node_types) == sorted(b.data.node_types)
    assert sorted(a.data.edge_types) == sorted(b.data.edge_types)
    assert a.target_types == b.target_types and list(a.class_names) == list(b.class_names)
    for t in a.data.node_types:
        assert a.data[t].num_nodes == b.data[t].num_nodes
        xa, xb = getattr(a.data[t], "x", None), getattr(b.data[t], "x", None)
        assert (xa is None) == (xb is None)
        if xa is not None:
            torch.testing.assert_close(xa, xb)
    for et in a.data.edge_types:
        ea, eb = a.data[et], b.data[et]
        key = lambda e: (e.edge_index[0] * 10**7 + e.edge_index[1]).argsort()  # noqa: E731  (edge order may differ)
        ka, kb = key(ea), key(eb)
        assert torch.equal(ea.edge_index[:, ka], eb.edge_index[:, kb])
        wa, wb = getattr(ea, "edge_weight", None), getattr(eb, "edge_weight", None)
        assert (wa is None) == (wb is None)
        if wa is not None:
            torch.testing.assert_close(wa[ka], wb[kb])
    assert torch.equal(a.y, b.y)
    for part in ("train", "val", "test"):
        assert torch.equal(a.split.get(part, torch.empty(0, dtype=torch.long)).sort().values,
                           b.split.get(part, torch.empty(0, dtype=torch.long)).sort().values)


# ---------------------------------------------------------------- conversions
def test_round_trip_synthetic_with_edge_weights():
    task = load_dataset("synthetic", num_movies=150, seed=1)
    et = task.data.edge_types[0]
    task.data[et].edge_weight = torch.linspace(0.5, 2.0, task.data[et].edge_index.size(1))
    back = from_networkx(to_networkx(task))
    assert_same_task(task, back)
    assert back.meta["official_split"] and back.item_ids[0] == "movie:0"


def test_round_trip_cora_real_data():
    real_path("planetoid", "ind.cora.graph")
    task = load_dataset("cora")
    G = to_networkx(task)
    assert G.number_of_nodes() == 2708 and G.nodes["paper:0"]["node_type"] == "paper"
    assert_same_task(task, from_networkx(G))


def test_homogeneous_graph_defaults_and_class_names():
    task = from_networkx(_karate())
    assert task.target_types == ["node"] and task.data.edge_types == [("node", "to", "node")]
    assert task.class_names == ["Mr. Hi", "Officer"] and task.split == {}
    # undirected: both directions of the 78 edges
    assert task.data["node", "to", "node"].edge_index.size(1) == 2 * 78
    assert task.data["node"].x.shape == (34, 2) and task.num_items == 34
    # no official split: stratified, then a long-tailed training set on request
    split = make_split(task, split="official", imbalance_ratio=4, seed=0)
    assert split.meta["split_mode"] == "stratified (no official split)"
    counts = split.train_class_counts().tolist()
    assert max(counts) / min(counts) == pytest.approx(4, rel=0.3)


def test_unlabelled_nodes_and_label_types():
    G = nx.DiGraph()
    G.add_node(1, y=1, x=[1.0]); G.add_node(2, y=-1, x=[2.0]); G.add_node(3, x=[3.0]); G.add_node(4, y="0", x=[4.0])
    G.add_edge(1, 2); G.add_edge(3, 4)
    task = from_networkx(G, reverse_edges=True)
    assert task.y.tolist() == [1, -1, -1, 0] and task.class_names == ["class0", "class1"]
    assert sorted(r for _, r, _ in task.data.edge_types) == ["rev_to", "to"]


def test_attribute_names_are_options(tmp_path):
    G = nx.Graph()
    # (not "label": read_gexf fills that one with every node's GEXF label)
    G.add_node("a", kind="user", cls="spam", feat="1 2"); G.add_node("b", kind="user", cls="ham", feat="3 4")
    G.add_node("c", kind="item"); G.add_edge("a", "c", rel="buys"); G.add_edge("b", "c", rel="buys")
    nx.write_gexf(G, tmp_path / "g.gexf")
    task = load_dataset(f"nx:{tmp_path / 'g.gexf'}", node_type="kind", label="cls", features="feat", edge_type="rel",
                        cache="false")
    assert task.target_types == ["user"] and task.class_names == ["ham", "spam"]
    assert set(task.data.edge_types) == {("user", "buys", "item"), ("item", "buys", "user")}
    torch.testing.assert_close(task.data["user"].x, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_edge_list_with_node_table(tmp_path):
    (tmp_path / "g.edgelist").write_text("# citations\np1 p2 cites\np2 p3 cites 2.5\np1 a1 by\n")
    (tmp_path / "nodes.csv").write_text('id,node_type,y,x\np1,paper,0,"1,0"\np2,paper,1,"0,1"\np3,paper,,"1,1"\n'
                                        'a1,author,,\np4,paper,1,"0,0"\n')
    task = load_dataset(f"nx:{tmp_path / 'g.edgelist'}", nodes=str(tmp_path / "nodes.csv"), directed="true")
    assert task.target_types == ["paper"] and task.y.tolist() == [0, 1, -1, 1]  # p4: isolated, from the table
    cites = task.data["paper", "cites", "paper"]
    assert cites.edge_index.tolist() == [[0, 1], [1, 2]] and cites.edge_weight.tolist() == [1.0, 2.5]
    assert task.data["paper", "by", "author"].edge_index.tolist() == [[0], [0]]
    assert "x" not in task.data["author"]
    # networkx's own edge-list format (a dict per line), undirected by default
    (tmp_path / "h.edgelist").write_text("1 2 {'edge_type': 'r'}\n2 3 {'edge_type': 'r'}\n")
    (tmp_path / "h.tsv").write_text("id\ty\n1\t0\n2\t1\n3\t0\n")
    task = load_dataset(f"nx:{tmp_path / 'h.edgelist'}", nodes=str(tmp_path / "h.tsv"))
    assert task.data["node", "r", "node"].edge_index.size(1) == 4


def test_tuple_node_ids():
    G = nx.grid_2d_graph(3, 3)
    for n in G.nodes:
        G.nodes[n]["y"] = sum(n) % 2
    task = from_networkx(G)
    assert task.item_ids[0] == (0, 0) and task.num_items == 9
    assert task.data["node", "to", "node"].edge_index.size(1) == 2 * 12


def test_official_split_attribute():
    G = nx.path_graph(6)
    for n in G.nodes:
        G.nodes[n].update(y=n % 2, split=["train", "train", "val", "val", "test", "test"][n])
    task = from_networkx(G)
    assert {k: v.tolist() for k, v in task.split.items()} == {"train": [0, 1], "val": [2, 3], "test": [4, 5]}
    assert make_split(task, split="official", seed=0).meta["split_mode"] == "official"


# ---------------------------------------------------------------- training through nx:<file>
HOMOGENEOUS_ONLY = {"gcn", "gatconv", "sage"}  # refuse several node types (their own clear error)
NEED_METAPATHS = {"han", "metapath2vec"}  # need a type linked to and from the target (or --metapaths)


@pytest.mark.parametrize("graph", ["hetero", "karate"])
def test_every_fitting_model_trains_on_a_graphml_file(files, graph):
    dataset = f"nx:{files / (graph + '.graphml')}"
    for model in models_for("node"):
        if model.startswith("dgl-") and not _dgl_available():
            continue
        cfg = RunConfig(dataset=dataset, model=model, epochs=2, patience=2, hidden=8, heads=2, seed=0, quiet=True,
                        imbalance_ratio=3)
        unfit = HOMOGENEOUS_ONLY if graph == "hetero" else NEED_METAPATHS
        if model in unfit:
            with pytest.raises(HgimbError):
                run_experiment(cfg, write=False)
            continue
        metrics = run_experiment(cfg, write=False).metrics
        assert metrics["epochs_run"] == 2 and 0.0 <= metrics["test"]["macro_f1"] <= 1.0, model


def test_every_remedy_trains_on_a_networkx_graph(files):
    dataset = f"nx:{files / 'karate.graphml'}"
    # graphsmote inserts nodes before an output convolution: the reference-style gcn has one
    needs_conv_head = {"graphsmote"}
    # value-regression trains on the real value behind a --threshold label; karate's are classes
    needs_real_target = {"value-regression"}
    for remedy in REMEDIES.names():
        model, options = ("gcn", {"style": "reference"}) if remedy in needs_conv_head else ("rgcn", {})
        cfg = RunConfig(dataset=dataset, model=model, model_options=options, remedy=remedy, epochs=2, patience=2,
                        hidden=8, seed=0, quiet=True, imbalance_ratio=3, imbalance_type="long-tail")
        if remedy in needs_real_target:
            with pytest.raises(HgimbError, match="real-valued target by --threshold"):
                run_experiment(cfg, write=False)
            continue
        metrics = run_experiment(cfg, write=False).metrics
        assert metrics["remedy"] and 0.0 <= metrics["test"]["balanced_accuracy"] <= 1.0, remedy


def test_cli_trains_a_graphml_file_and_names_nodes_in_predictions(files, tmp_path, capsys):
    from hgimb.train import main

    out = tmp_path / "run"
    code = main(["--dataset", f"nx:{files / 'karate.graphml'}", "--model", "gcn", "--epochs", "3", "--quiet",
                 "--out", str(out)])
    assert code == 0
    predictions = (out / "predictions.csv").read_text().splitlines()
    assert len(predictions) > 1
    assert main(["--dataset", f"nx:{tmp_path / 'absent.graphml'}", "--epochs", "1", "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err


# ---------------------------------------------------------------- bad input: one line, naming the node or edge
def _graph(**tweaks):
    G = nx.DiGraph()
    G.add_node("m1", node_type="movie", y=0, x="1,2")
    G.add_node("m2", node_type="movie", y=1, x="3,4")
    G.add_node("a1", node_type="actor")
    G.add_edge("a1", "m1", edge_type="in")
    G.add_edge("a1", "m2", edge_type="in")
    for node, attrs in tweaks.get("nodes", {}).items():
        G.nodes[node].clear() if attrs is None else G.nodes[node].update(attrs)
    for (u, v), attrs in tweaks.get("edges", {}).items():
        G.edges[u, v].clear() if attrs is None else G.edges[u, v].update(attrs)
    return G


@pytest.mark.parametrize("tweaks, words", [
    ({"nodes": {"a1": None}}, ["'a1'", "'node_type'"]),
    ({"nodes": {"m2": {"x": "3,4,5"}}}, ["'m2'", "3 features"]),
    ({"nodes": {"m2": {"x": "3,abc"}}}, ["'m2'", "list of numbers"]),
    ({"nodes": {"m1": {"y": 1.5}}}, ["'m1'", "1.5"]),
    ({"nodes": {"m1": {"y": -3}}}, ["'m1'", "-3"]),
    ({"nodes": {"m1": {"split": "training"}}}, ["'m1'", "'training'"]),
    ({"nodes": {"a1": {"split": "train"}}}, ["'a1'", "not of a labelled"]),
    ({"edges": {("a1", "m2"): None}}, ["edge ('a1', 'm2')", "'edge_type'"]),
    ({"edges": {("a1", "m2"): {"weight": "heavy"}}}, ["edge ('a1', 'm2')", "'heavy'"]),
    ({"edges": {("a1", "m2"): {"weight": -1}}}, ["edge ('a1', 'm2')", "positive"]),
])
def test_bad_attributes_get_one_line_errors(tweaks, words):
    with pytest.raises(HgimbError) as info:
        from_networkx(_graph(**tweaks))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_no_labels_and_unknown_target():
    G = nx.path_graph(3)
    with pytest.raises(HgimbError, match="no node has a 'y' attribute"):
        from_networkx(G)
    with pytest.raises(HgimbError, match="target node type 'paper' does not occur"):
        from_networkx(_graph(), target="paper")
    with pytest.raises(HgimbError, match="needs a networkx graph"):
        from_networkx({"a": 1})


@pytest.mark.parametrize("name, text, words", [
    ("bad.graphml", "<graphml><graph><node id='a'></graph>", ["bad.graphml", "GraphML", "line"]),
    ("bad.gexf", "not xml at all", ["bad.gexf", "GEXF"]),
    ("bad.edgelist", "a b r\nc d r\ne\n", ["bad.edgelist line 3", "1 column"]),
    ("bad.edges", "a b {'edge_type': 'r'}\nc d {broken\n", ["bad.edges line 2"]),
    ("graph.json", "{}", ["unknown graph file type '.json'"]),
    ("empty.edgelist", "# nothing\n", ["no edges"]),
])
def test_bad_files_get_one_line_errors(tmp_path, name, text, words):
    (tmp_path / name).write_text(text)
    with pytest.raises(HgimbError) as info:
        load_dataset(f"nx:{tmp_path / name}", cache="false")
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_bad_options_and_node_tables(tmp_path):
    (tmp_path / "g.edgelist").write_text("a b\n")
    with pytest.raises(HgimbError, match="unknown --dataset-option"):
        load_dataset(f"nx:{tmp_path / 'g.edgelist'}", colour="red")
    with pytest.raises(HgimbError, match="option directed must be none, true or false, got 'maybe'"):
        load_dataset(f"nx:{tmp_path / 'g.edgelist'}", directed="maybe")
    with pytest.raises(HgimbError, match="node table .* not found"):
        load_dataset(f"nx:{tmp_path / 'g.edgelist'}", nodes=str(tmp_path / "absent.csv"))
    (tmp_path / "dup.csv").write_text("id,y\na,0\na,1\n")
    with pytest.raises(HgimbError, match="dup.csv line 3: node 'a' is listed twice"):
        load_dataset(f"nx:{tmp_path / 'g.edgelist'}", nodes=str(tmp_path / "dup.csv"), cache="false")


def test_file_loads_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HGIMB_CACHE", str(tmp_path / "cache"))
    nx.write_graphml(_karate(), tmp_path / "k.graphml")
    first = load_dataset(f"nx:{tmp_path / 'k.graphml'}")
    assert list((tmp_path / "cache" / "networkx").glob("*.pt"))
    second = load_dataset(f"nx:{tmp_path / 'k.graphml'}")
    assert_same_task(first, second)
    assert np.array_equal(first.item_ids, second.item_ids)
