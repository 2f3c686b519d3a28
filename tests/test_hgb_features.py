"""HGB --feats-type equivalent: the ``node_features`` dataset option (all | target | none)."""
import pytest

from hgimb.data import load_dataset
from hgimb.data.hgb import load_hgb_task
from hgimb.errors import HgimbError

from test_hgb import NODES, write_hgb

# the tiny graph with features on the actors too (a non-target type with features, as ACM's authors)
NODES_ALL_FEATURES = [line + "\t1,1" if line.split("\t")[2] == "1" else line for line in NODES]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HGIMB_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("mode, kept", [("all", {"movie", "actor"}), ("target", {"movie"}), ("none", set())])
def test_node_features_modes(tmp_path, mode, kept):
    path = write_hgb(tmp_path, node_dat=NODES_ALL_FEATURES)
    task = load_hgb_task(path, "tiny", node_features=mode)
    have = {t for t in task.data.node_types if getattr(task.data[t], "x", None) is not None}
    assert have == kept
    assert task.data["actor"].num_nodes == 2 and task.data["movie"].num_nodes == 4
    assert task.meta["node_features"] == mode
    assert sorted(task.meta["features_dropped"]) == sorted({"movie", "actor"} - kept)


def test_node_features_through_the_registry_and_bad_value(tmp_path):
    write_hgb(tmp_path / "hgb", name="ACM", node_dat=NODES_ALL_FEATURES)
    task = load_dataset("acm", root=tmp_path, node_features="target")
    assert getattr(task.data["actor"], "x", None) is None and task.data["movie"].x.shape == (4, 2)
    with pytest.raises(HgimbError, match="option node_features must be one of all, target, none, got 'ids'"):
        load_dataset("acm", root=tmp_path, node_features="ids")


def test_featureless_types_train_with_embeddings(tmp_path):
    """A model on node_features=none builds embeddings for every type and trains."""
    from hgimb.config import RunConfig
    from hgimb.engine.trainer import Trainer
    from hgimb.data.splits import make_split

    path = write_hgb(tmp_path, node_dat=NODES_ALL_FEATURES)
    task = make_split(load_hgb_task(path, "tiny", node_features="none"), val_fraction=0.5, seed=0)
    trainer = Trainer.from_config(RunConfig(dataset="tiny", model="rgcn", epochs=2, hidden=8), task)
    assert set(trainer.model.input.embed.keys()) == {"movie", "actor"}
    assert set(trainer.model.input.proj.keys()) == set()
    trainer.fit()


def test_raw_feature_values_by_default_normalize_on_request(tmp_path):
    path = write_hgb(tmp_path, node_dat=NODES_ALL_FEATURES)
    raw = load_hgb_task(path, "tiny")
    assert raw.data["movie"].x[0].tolist() == [0.5, 1.0] and raw.meta["normalized_features"] == []
    normalized = load_hgb_task(path, "tiny", normalize=True)
    assert normalized.data["actor"].x.sum(1).tolist() == [1.0, 1.0]  # rows without negatives sum to 1
    write_hgb(tmp_path / "hgb", name="ACM", node_dat=NODES_ALL_FEATURES)
    assert load_dataset("acm", root=tmp_path).data["actor"].x.sum(1).tolist() == [2.0, 2.0]
    assert load_dataset("acm", root=tmp_path, normalize="true").data["actor"].x.sum(1).tolist() == [1.0, 1.0]
