"""The synthetic Freebase-like dataset: determinism, schema, class profile, planted signal."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from hgimb.data import DATASETS, load_dataset
from hgimb.data.splits import make_split
from hgimb.data.synthetic import class_sizes, load_synthetic
from hgimb.errors import HgimbError

PEOPLE = {"actor": ("starring", "in"), "director": ("directed_by", "of"), "writer": ("written_by", "of")}


@pytest.fixture(scope="module")
def task():
    return load_synthetic(None, num_movies=1500, seed=0)


def test_registered_and_loadable_by_name(tmp_path):
    assert "synthetic" in DATASETS
    t = load_dataset("synthetic", tmp_path / "nowhere", num_movies=200)  # the root is ignored
    assert t.num_items == 200 and t.validate() is t


def test_schema(task):
    data = task.data
    assert set(data.node_types) == {"movie", "actor", "director", "writer"}
    assert task.kind == "node" and task.target_types == ["movie"] and task.class_names == [f"class{c}" for c in range(5)]
    assert np.array_equal(task.item_ids, np.arange(1500))
    assert data["movie"].x.shape == (1500, 32) and data["movie"].x.dtype == torch.float32
    expected_edges = set()
    for person, (forward, backward) in PEOPLE.items():
        expected_edges |= {("movie", forward, person), (person, backward, "movie")}
        assert "x" not in data[person]
        fwd = data["movie", forward, person].edge_index
        bwd = data[person, backward, "movie"].edge_index
        assert fwd.dtype == torch.long and torch.equal(bwd, fwd.flip(0))
        assert int(fwd[0].min()) >= 0 and int(fwd[0].max()) < 1500
        assert int(fwd[1].min()) >= 0 and int(fwd[1].max()) < data[person].num_nodes
        keys = fwd[0] * data[person].num_nodes + fwd[1]
        assert keys.unique().numel() == keys.numel()  # no duplicate links
    assert set(data.edge_types) == expected_edges
    # about avg_degree=10 people per movie in total
    per_movie = sum(data["movie", f, p].edge_index.shape[1] for p, (f, _) in PEOPLE.items()) / 1500
    assert 9 < per_movie < 10.5
    featureless = load_synthetic(None, num_movies=300, features=False)
    assert "x" not in featureless.data["movie"]


def test_deterministic_in_seed():
    a, b, c = (load_synthetic(None, num_movies=400, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.y, b.y) and torch.equal(a.data["movie"].x, b.data["movie"].x)
    for et in a.data.edge_types:
        assert torch.equal(a.data[et].edge_index, b.data[et].edge_index)
    for part in ("train", "val", "test"):
        assert torch.equal(a.split[part], b.split[part])
    assert not torch.equal(a.y, c.y)
    assert not torch.equal(a.data["movie", "starring", "actor"].edge_index, c.data["movie", "starring", "actor"].edge_index)


@pytest.mark.parametrize("profile", ["long-tail", "step", "balanced"])
def test_class_size_profile(profile):
    t = load_synthetic(None, num_movies=2000, num_classes=6, profile=profile, imbalance=20)
    sizes = torch.bincount(t.y).tolist()
    assert sum(sizes) == 2000 and sizes == t.meta["class_sizes"] == class_sizes(2000, 6, profile, 20).tolist()
    if profile == "long-tail":
        assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 6
        assert sizes[0] / sizes[-1] == pytest.approx(20, rel=0.05)
        ratios = np.array(sizes[:-1]) / np.array(sizes[1:])
        assert np.allclose(ratios, 20 ** (1 / 5), rtol=0.05)  # geometric
    elif profile == "step":
        assert max(sizes[:3]) - min(sizes[:3]) <= 1 and max(sizes[3:]) - min(sizes[3:]) <= 1
        assert sizes[0] / sizes[-1] == pytest.approx(20, rel=0.05)
    else:
        assert max(sizes) - min(sizes) <= 1
    # official split: 50 / 25 / 25 per class, so the training set inherits the profile
    assert t.meta["official_split"] is True
    for part, f in (("train", 0.5), ("val", 0.25), ("test", 0.25)):
        assert np.all(np.abs(np.array(t.class_counts(part).tolist()) - f * np.array(sizes)) <= 1)
    # the pipeline's official split keeps the loader's val
    assert torch.equal(make_split(t, split="official").split["val"], t.split["val"])


def _macro_f1(features, task):
    y = task.y.numpy()
    tr, te = task.split["train"].numpy(), task.split["test"].numpy()
    clf = LogisticRegression(max_iter=500, class_weight="balanced").fit(features[tr], y[tr])
    return f1_score(y[te], clf.predict(features[te]), average="macro")


def _neighbour_label_votes(task):
    """Training-label counts over movie-person-movie paths (self excluded), one block per relation."""
    y, num_movies = task.y.numpy(), task.num_items
    onehot = np.zeros((num_movies, task.num_classes))
    train = task.split["train"].numpy()
    onehot[train, y[train]] = 1
    blocks = []
    for person, (forward, _) in PEOPLE.items():
        ei = task.data["movie", forward, person].edge_index.numpy()
        adj = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(num_movies, task.data[person].num_nodes))
        votes = adj @ (adj.T @ onehot) - np.asarray(adj.sum(1)) * onehot  # minus the path back to itself
        blocks.append(votes / np.maximum(votes.sum(1, keepdims=True), 1))
    return np.hstack(blocks)


def test_signal_is_in_the_structure_not_in_the_features(task):
    feature_f1 = _macro_f1(task.data["movie"].x.numpy(), task)
    structure_f1 = _macro_f1(_neighbour_label_votes(task), task)
    assert feature_f1 > 0.2 + 0.02  # weakly informative (chance is about 0.2 for 5 classes)
    assert feature_f1 < 0.5
    assert structure_f1 > 0.75
    assert structure_f1 > feature_f1 + 0.3
    # no homophily, no structural signal
    random = load_synthetic(None, num_movies=1500, seed=0, homophily=0.0)
    assert _macro_f1(_neighbour_label_votes(random), random) < 0.35


@pytest.mark.parametrize("options,match", [
    (dict(num_nodes=10), "unknown --dataset-option num_nodes for dataset 'synthetic'.*valid options: num_movies"),
    (dict(num_movies=5), r"num_movies must be >= 3 \* num_classes = 15, got 5"),
    (dict(profile="zipf"), "profile"),
    (dict(imbalance=0.5), "imbalance"),
    (dict(homophily=1.5), "homophily"),
    (dict(features="maybe"), "features"),
    (dict(avg_degree=0), "avg_degree"),
    (dict(num_classes=1), "num_classes"),
])
def test_bad_options(options, match):
    with pytest.raises(HgimbError, match=match):
        load_synthetic(None, **options)


def test_string_options_from_the_command_line():
    t = load_synthetic(None, num_movies="300", features="false", homophily="0.5", profile="balanced")
    assert t.num_items == 300 and "x" not in t.data["movie"] and t.meta["options"]["homophily"] == 0.5
