"""python -m hgimb.diagnose: counts, ratio, severity, weights, recommendations, homophily."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from hgimb import diagnose as dg
from hgimb.data.task import Task

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HGIMB_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def crystal_dir(tmp_path):
    """8 tiny crystals, 6 of class 0 and 2 of class 1 (ratio 3: moderate), no atom_init.json."""
    d = tmp_path / "tiny"
    d.mkdir()
    lines = []
    for i in range(8):
        structure = Structure(Lattice.cubic(4.0 + 0.1 * i), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        structure.to(filename=str(d / f"x{i}.cif"))
        lines.append(f"x{i},{1 if i in (2, 5) else 0}")
    (d / "id_prop.csv").write_text("\n".join(lines) + "\n")
    return d


def run_cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "hgimb.diagnose", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------------------- library
def test_severity_boundaries_and_weights():
    assert dg.severity(1.0) == "mild" and dg.severity(2.99) == "mild"
    assert dg.severity(3.0) == "moderate" and dg.severity(10.0) == "moderate"
    assert dg.severity(10.01) == "severe" and dg.severity(None) == "severe"
    weights = dg.inverse_frequency_weights([90, 10])
    assert weights == pytest.approx([0.2, 1.8])
    try:  # the same weights the 'weighted' remedy trains with
        from hgimb.imbalance.weights import class_weights
    except ImportError:
        return
    counts = [500, 120, 7]
    assert dg.inverse_frequency_weights(counts) == pytest.approx(class_weights(torch.tensor(counts)).tolist(), rel=1e-5)


def test_recommended_remedies_exist():
    from hgimb.imbalance import REMEDIES

    for sev in ("mild", "moderate", "severe"):
        for binary in (True, False):
            for kind in (None, "node", "graph"):
                rec = dg.recommend(sev, binary, kind=kind)
                assert rec["why"] and "hgimb.advise" in rec["advise"]
                if rec["remedy"] is None:
                    assert "hgimb.advise" in rec["why"]
                else:
                    assert all(part in REMEDIES for part in rec["remedy"].split("+")), rec


# ------------------------------------------------------------------ evidence behind the advice
BENCHMARKS = REPO / "BENCHMARKS.md"


def test_evidence_file_is_what_benchmarks_md_says():
    """hgimb/evidence/remedies.json is derived from BENCHMARKS.md's tables, not typed in."""
    from hgimb import evidence

    assert evidence.load() == evidence.extract(BENCHMARKS.read_text()), \
        f"remedies.json is out of date with BENCHMARKS.md; run {evidence.COMMAND}"
    tables = {t["id"]: t for t in evidence.load()["tables"]}
    freebase = tables["freebase-rgcn-long-tail10"]
    assert freebase["severity"] == "severe" and freebase["train_class_counts"] == [115, 36, 363]
    assert freebase["scores"]["balanced-softmax+threshold"][0] < freebase["scores"]["smote"][0]
    assert tables["magnetic-tc-cgcnn-tc>600"]["metric"] == "pr_auc" and tables["magnetic-tc-cgcnn-tc>600"]["binary"]
    assert {t["section"] for t in tables.values()} == {"1", "2", "3"}
    assert len(tables) == len(evidence.load()["tables"])  # one entry per setting (no duplicate ids)


def test_evidence_remedy_names_from_table_labels():
    """The section 3 labels map to remedy specs; GraphENS's ego-network rows are not the
    embedding-space graphens rows."""
    from hgimb import evidence
    from hgimb.evidence import _remedy

    assert _remedy("GraphENS (ego networks, CE)") == "graphens-ego"
    assert _remedy("GraphENS (ego) + TAM (CE base)") == "graphens-ego+tam"
    assert _remedy("graphens + TAM (CE base)") == "graphens+tam"
    assert _remedy("BS + TAM") == "tam" and _remedy("BAT + BS + TAM") == "bat+tam" and _remedy("CE") == "none"
    assert _remedy("BAT (CE)") == "bat" and _remedy("GraphSHA (CE)") == "graphsha"  # names --remedy takes
    from hgimb.imbalance import build_remedy

    for table in evidence.load()["tables"]:  # every evidence name is a remedy --remedy accepts
        for name in table["scores"]:
            build_remedy(name)


def _regimes(tables):
    return {(t["severity"], bool(t["binary"]), t["kind"]) for t in tables}


def test_recommendation_never_below_the_median_of_its_tables():
    """The issue's rule: never recommend a remedy that a measured table of that regime ranks
    below the median (and never one a table of the regime did not measure)."""
    from hgimb import evidence

    tables = evidence.load()["tables"]
    recommended = 0
    for sev, binary, kind in _regimes(tables) | {(s, b, None) for s, b, _ in _regimes(tables)}:
        rec = dg.recommend(sev, binary, kind=kind)
        regime = [t for t in tables if t["severity"] == sev and bool(t["binary"]) == binary
                  and (kind is None or t["kind"] == kind)]
        assert rec["tables"] == [t["id"] for t in regime]
        if rec["remedy"] is None:
            continue
        recommended += 1
        for t in regime:
            scores = t["scores"]
            assert rec["remedy"] in scores, (t["id"], rec["remedy"])
            higher = sum(v[0] > scores[rec["remedy"]][0] for v in scores.values())
            assert 1 + higher <= (len(scores) + 1) / 2, (t["id"], rec["remedy"], 1 + higher, len(scores))
            assert scores[rec["remedy"]][0] > scores["none"][0]
    assert recommended >= 1  # the rule is exercised, not vacuous


def test_issue_example_freebase_rho10_is_backed_by_the_table():
    rec = dg.recommend("severe", False, kind="node")
    assert rec["remedy"] != "balanced-softmax+threshold"  # the contradicted rule of issue 18
    line = next(e for e in rec["evidence"] if e["table"] == "freebase-rgcn-long-tail10")
    if rec["remedy"] is not None:  # a recommendation never ranks below the table's median
        assert line["rank"] <= (line["remedies"] + 1) / 2
    else:  # no remedy at or above the median in every table of the regime: search on validation
        assert rec["why"].startswith("evidence mixed") and line["best"][0] == "smote"
    text = "\n".join(dg.format_recommendation(rec, "freebase"))
    assert "freebase-rgcn-long-tail10" in text and "python -m hgimb.advise freebase" in text


def test_mixed_or_missing_evidence_points_to_advise():
    tables = [
        {"id": "a", "section": "1", "severity": "severe", "binary": False, "kind": "node", "metric": "macro_f1",
         "n": 5, "scores": {"none": [40.0, 1.0], "x": [60.0, 1.0], "y": [45.0, 1.0], "z": [50.0, 1.0]}},
        {"id": "b", "section": "1", "severity": "severe", "binary": False, "kind": "node", "metric": "macro_f1",
         "n": 5, "scores": {"none": [40.0, 1.0], "x": [41.0, 1.0], "y": [60.0, 1.0], "z": [39.0, 1.0]}},
    ]
    # x: rank 1 and 2 but only 1 point (= its std) over none in b; y: rank 3 of 4 in a; z: last in b
    rec = dg.recommend("severe", False, kind="node", evidence={"tables": tables})
    assert rec["remedy"] is None and "mixed" in rec["why"] and "hgimb.advise" in rec["why"]
    tables[1]["scores"]["z"] = [55.0, 1.0]  # now z ranks 2 of 4 in both, well clear of none
    rec = dg.recommend("severe", False, kind="node", evidence={"tables": tables})
    assert rec["remedy"] == "z" and [e["rank"] for e in rec["evidence"]] == [2, 2]
    assert dg.recommend("severe", False, kind="graph", evidence={"tables": tables})["remedy"] is None
    rec = dg.recommend("mild", False, evidence={"tables": tables})
    assert rec["remedy"] is None and "no measured remedy table" in rec["why"]


def test_diagnose_crystal_counts(crystal_dir):
    task = dg.load_for_diagnosis(f"crystal:{crystal_dir}")
    report = dg.diagnose(task)
    assert report["kind"] == "graph" and report["num_items"] == 8
    assert report["class_counts"] == [6, 2]
    assert report["imbalance_ratio"] == pytest.approx(3.0)
    assert report["severity"] == "moderate"
    assert report["pos_weight"] == pytest.approx(3.0)
    assert report["class_weights"] == pytest.approx([0.5, 1.5])
    assert report["recommendation"]["remedy"] is None  # no measured table for moderate binary graph tasks
    assert "hgimb.advise" in report["recommendation"]["why"]
    assert report["crystal"]["num_graphs"] == 8
    json.dumps(report)  # JSON-ready as it is
    text = dg.format_report(report)
    assert "3.00:1" in text and "moderate" in text and "pos_weight     3.000" in text


def test_diagnose_counts_the_training_split(crystal_dir):
    from hgimb.data.splits import make_split

    task = dg.load_for_diagnosis(str(crystal_dir / "id_prop.csv"))  # a path to the id_prop file
    split = make_split(task, split="stratified", seed=0)
    report = dg.diagnose(split, part="train")
    train = split.split["train"]
    assert report["counted"] == "train split"
    assert report["class_counts"] == torch.bincount(task.y[train], minlength=2).tolist()
    assert sum(report["split_counts"]["test"]) == split.split["test"].numel()


def hetero_task(labels, x_links, cites, split=None):
    """A node task: 'paper' targets, an 'author' type linked by x_links, 'cites' among papers."""
    from torch_geometric.data import HeteroData

    data = HeteroData()
    data["paper"].num_nodes = len(labels)
    data["author"].num_nodes = 1 + max(a for _, a in x_links)
    links = torch.tensor(x_links).t()
    data["paper", "written_by", "author"].edge_index = links
    data["author", "writes", "paper"].edge_index = links.flip(0)
    data["paper", "cites", "paper"].edge_index = torch.tensor(cites).t()
    y = torch.tensor(labels)
    return Task(name="toy", kind="node", class_names=["a", "b"], y=y, split=split or {}, data=data,
                target_types=["paper"])


def test_homophily_by_hand():
    # papers 0,1,2 class a, paper 3 class b; author 0 wrote 0,1; author 1 wrote 1,2,3 (1 listed twice)
    task = hetero_task([0, 0, 0, 1], [(0, 0), (1, 0), (1, 1), (1, 1), (2, 1), (3, 1)], [(0, 3), (1, 2), (2, 2)])
    report = dg.diagnose(task)
    h = report["graph"]["homophily"]["paper"]
    pap = h["metapaths"]["paper-author-paper"]
    # neighbour pairs 0-1, 1-2, 1-3, 2-3: class a papers see 0->1, 1->0,2,3, 2->1,3 (4 same of 6),
    # paper 3 (class b) sees 1, 2 (0 of 2)
    assert pap["per_class"]["a"] == pytest.approx(4 / 6)
    assert pap["per_class"]["b"] == pytest.approx(0.0)
    assert pap["overall"] == pytest.approx(4 / 8) and pap["pairs"] == 8
    cites = h["relations"]["paper-cites-paper"]  # 0-3, 1-2 (symmetrised; the self-loop 2-2 dropped)
    assert cites["per_class"]["a"] == pytest.approx(2 / 3) and cites["per_class"]["b"] == 0.0
    assert cites["coverage"] == pytest.approx(1.0)
    assert report["graph"]["node_counts"] == {"paper": 4, "author": 2}
    assert report["graph"]["edge_counts"]["paper-written_by-author"] == 6
    # with a split, only training labels count: paper 2 out of train
    split = {"train": torch.tensor([0, 1, 3]), "val": torch.tensor([2]), "test": torch.tensor([], dtype=torch.long)}
    task = task.with_split(split)
    report = dg.diagnose(task, part="train")
    pap = report["graph"]["homophily"]["paper"]["metapaths"]["paper-author-paper"]
    # pairs among 0,1,3: 0-1 (a,a), 1-3 (a,b): class a 2 same of 3, class b 0 of 1
    assert pap["per_class"]["a"] == pytest.approx(2 / 3) and pap["per_class"]["b"] == 0.0
    assert report["class_counts"] == [2, 1] and report["counted"] == "train split"


def test_homophily_matches_dense_brute_force():
    rng = np.random.default_rng(0)
    n_paper, n_author, n_links = 60, 25, 150
    labels = rng.integers(0, 2, n_paper)
    labels[rng.random(n_paper) < 0.2] = -1  # unlabelled papers are ignored
    links = np.stack([rng.integers(0, n_paper, n_links), rng.integers(0, n_author, n_links)], 1)
    cites = np.stack([rng.integers(0, n_paper, 80), rng.integers(0, n_paper, 80)], 1)
    task = hetero_task(labels.tolist(), links.tolist(), cites.tolist())
    task.meta = {}
    h = dg.diagnose(task)["graph"]["homophily"]["paper"]
    lab = labels >= 0

    def dense_homophily(pairs):
        pairs = pairs.astype(bool) & lab[:, None] & lab[None, :]
        np.fill_diagonal(pairs, False)
        out = {}
        for c, name in enumerate(["a", "b"]):
            rows = pairs[labels == c]
            out[name] = (rows & (labels == c)[None, :]).sum() / rows.sum()
        return out

    adjacency = np.zeros((n_paper, n_author), dtype=int)
    adjacency[links[:, 0], links[:, 1]] = 1
    expected = dense_homophily(adjacency @ adjacency.T > 0)
    got = h["metapaths"]["paper-author-paper"]["per_class"]
    assert got == pytest.approx(expected)
    direct = np.zeros((n_paper, n_paper), dtype=bool)
    direct[cites[:, 0], cites[:, 1]] = True
    assert h["relations"]["paper-cites-paper"]["per_class"] == pytest.approx(dense_homophily(direct | direct.T))


# ---------------------------------------------------------------------------- CLI
def test_cli_text_and_json(crystal_dir, capsys):
    assert dg.main([str(crystal_dir)]) == 0
    out = capsys.readouterr().out
    assert "moderate" in out and "#" in out and "no fixed remedy" in out and "python -m hgimb.advise" in out
    result = run_cli(f"crystal:{crystal_dir}", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["class_counts"] == [6, 2] and report["severity"] == "moderate"
    assert report["pos_weight"] == pytest.approx(3.0)


def test_cli_threshold_and_split(tmp_path, crystal_dir, capsys):
    lines = [f"x{i},{v}" for i, v in enumerate([10, 20, 650, 30, 40, 700, 800, 5])]
    (crystal_dir / "id_prop.csv").write_text("\n".join(lines) + "\n")
    assert dg.main([f"crystal:{crystal_dir}", "--threshold", "600", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["class_names"] == ["<=600", ">600"] and report["class_counts"] == [5, 3]
    assert report["crystal"]["threshold"] == 600 and report["crystal"]["raw_target"]["max"] == 800
    assert dg.main([f"crystal:{crystal_dir}", "--threshold", "600", "--split", "stratified", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counted"] == "train split" and sum(report["class_counts"]) < 8


@pytest.mark.parametrize("args, fragment", [
    (["{dir}"], "pass --threshold"),
    (["{dir}/missing.csv"], "not found"),
    (["no-such-dataset"], "unknown dataset"),
])
def test_cli_bad_input_exits_2_with_one_line(crystal_dir, capsys, args, fragment):
    lines = [f"x{i},{v}" for i, v in enumerate([10.5, 20, 650, 30, 40, 700, 800, 5])]
    (crystal_dir / "id_prop.csv").write_text("\n".join(lines) + "\n")
    args = [a.format(dir=crystal_dir) for a in args]
    assert dg.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err


def test_cli_bad_input_subprocess(crystal_dir):
    (crystal_dir / "id_prop.csv").write_text("x0,0\nx1,zero\n")
    result = run_cli(str(crystal_dir))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "line 2" in result.stderr and "'zero'" in result.stderr


# ---------------------------------------------------------------------------- connectivity (NetworkX)
def test_connectivity_counts_components_isolated_and_unreached_nodes():
    import networkx as nx

    from hgimb.data.nx_io import from_networkx

    G = nx.Graph()
    # component A (5 nodes): training nodes of both classes, one val and one test node
    for i, (y, split) in enumerate([(0, "train"), (1, "train"), (0, "train"), (0, "val"), (1, "test")]):
        G.add_node(i, y=y, split=split, x=[1.0, float(i)])
    G.add_edges_from([(0, 1), (1, 2), (2, 3), (3, 4)])
    # component B (3 nodes): no training node; two test nodes (classes 1 and 0), an unlabelled node
    G.add_node(5, y=1, split="test", x=[0.0, 1.0])
    G.add_node(6, y=0, split="test", x=[0.0, 2.0])
    G.add_node(7, y=-1, x=[0.0, 3.0])
    G.add_edges_from([(5, 6), (6, 7)])
    # an isolated labelled validation node of class 1
    G.add_node(8, y=1, split="val", x=[2.0, 0.0])
    task = from_networkx(G)
    report = dg.diagnose(task)
    conn = report["graph"]["connectivity"]
    assert conn["components"] == 3 and conn["largest_share"] == pytest.approx(5 / 9)
    assert conn["isolated_labelled"] == 1 and conn["isolated_per_class"] == [0, 1]
    assert (conn["test_unreached"], conn["test_size"], conn["test_unreached_per_class"]) == (2, 3, [1, 1])
    assert (conn["val_unreached"], conn["val_size"], conn["val_unreached_per_class"]) == (1, 2, [0, 1])
    text = dg.format_report(report)
    assert "components     3 (edges undirected, all node types); the largest holds 55.6% of the nodes" in text
    assert "unreached      2 of 3 test nodes lie in components without a training node" in text
    json.dumps(report, default=dg._json_default)


def test_connectivity_skips_graphs_above_the_edge_limit(monkeypatch):
    from hgimb.data.synthetic import load_synthetic

    monkeypatch.setattr(dg, "MAX_CONNECTIVITY_EDGES", 10)
    report = dg.diagnose(load_synthetic(num_movies=200))
    assert "skipped" in report["graph"]["connectivity"]
    assert "components     skipped (more than 10 edges" in dg.format_report(report)
