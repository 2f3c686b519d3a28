"""Planetoid loader: Cora's counts and public split, and the errors for missing or damaged files."""
import pytest
import torch

from hgimb.data import load_dataset
from hgimb.data.download import PLANETOID_EXTS
from hgimb.errors import HgimbError

from conftest import real_path


def test_cora_counts_and_public_split():
    folder = real_path("planetoid")
    real_path("planetoid", "ind.cora.x")
    task = load_dataset("cora", root=folder.parent)
    data = task.data
    assert task.kind == "node" and task.target_types == ["paper"] and data.node_types == ["paper"]
    assert data["paper"].num_nodes == 2708 and data["paper"].x.shape == (2708, 1433)
    assert data.edge_types == [("paper", "cites", "paper")]
    edge_index = data["paper", "cites", "paper"].edge_index
    assert edge_index.shape == (2, 10556)  # 5,278 undirected citations, both directions
    reverse = edge_index.flip(0)
    key = lambda ei: torch.sort(ei[0] * 10000 + ei[1]).values  # noqa: E731
    assert torch.equal(key(edge_index), key(reverse))
    assert task.num_classes == 7 and int((task.y < 0).sum()) == 0
    assert [task.split[p].numel() for p in ("train", "val", "test")] == [140, 500, 1000]
    assert task.class_counts("train").tolist() == [20] * 7
    assert torch.bincount(task.y, minlength=7).tolist() == [351, 217, 418, 818, 426, 298, 180]
    assert task.class_names[3] == "Neural_Networks" and task.class_names[0] == "Theory"  # 818 / 351 papers
    assert task.meta["official_split"] is True
    task.validate()


def test_missing_files_say_where_to_get_them(tmp_path):
    with pytest.raises(HgimbError) as info:
        load_dataset("cora", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "planetoid") in message and "github.com/kimiyoung/planetoid" in message


def test_partial_files_are_named(tmp_path):
    folder = real_path("planetoid")
    partial = tmp_path / "planetoid"
    partial.mkdir()
    for ext in PLANETOID_EXTS:
        if ext not in ("graph", "ty"):
            (partial / f"ind.cora.{ext}").symlink_to(folder / f"ind.cora.{ext}")
    with pytest.raises(HgimbError, match=r"lacks ind\.cora\.ty, ind\.cora\.graph; download them from https://github"):
        load_dataset("cora", root=tmp_path)


def test_damaged_file_and_bad_option(tmp_path):
    folder = real_path("planetoid")
    broken = tmp_path / "planetoid"
    broken.mkdir()
    for ext in PLANETOID_EXTS:
        (broken / f"ind.cora.{ext}").symlink_to(folder / f"ind.cora.{ext}")
    (broken / "ind.cora.graph").unlink()
    (broken / "ind.cora.graph").write_bytes(b"\x80\x04truncated")
    with pytest.raises(HgimbError, match=r"cannot read ind\.cora\.\* in .*replace the files"):
        load_dataset("cora", root=tmp_path)
    with pytest.raises(HgimbError, match="unknown --dataset-option hidden.*valid options: download"):
        load_dataset("cora", root=tmp_path, hidden=16)


def test_normalize_option_row_normalises_like_pyg():
    from torch_geometric.transforms import NormalizeFeatures
    from torch_geometric.data import Data

    folder = real_path("planetoid")
    real_path("planetoid", "ind.cora.x")
    raw = load_dataset("cora", root=folder.parent)
    norm = load_dataset("cora", root=folder.parent, normalize=True)
    expected = NormalizeFeatures()(Data(x=raw.data["paper"].x.clone())).x
    assert torch.allclose(norm.data["paper"].x, expected)
    assert torch.allclose(norm.data["paper"].x.sum(1), torch.ones(2708))
    assert norm.meta["normalized_features"] is True and raw.meta["normalized_features"] is False
    with pytest.raises(HgimbError, match="normalize must be true or false"):
        load_dataset("cora", root=folder.parent, normalize="maybe")


def test_cora_equals_pygs_planetoid_reader():
    """What the GraphENS / TAM / GraphSHA code loads (PyG's Planetoid on the same ind.cora.* files,
    NormalizeFeatures): the same features, labels, edges and public masks as hgimb's loader."""
    from torch_geometric.io import read_planetoid_data
    from torch_geometric.transforms import NormalizeFeatures
    from torch_geometric.utils import coalesce

    folder = real_path("planetoid")
    real_path("planetoid", "ind.cora.x")
    theirs = NormalizeFeatures()(read_planetoid_data(str(folder), "cora"))
    ours = load_dataset("cora", root=folder.parent, normalize=True)
    assert torch.equal(ours.data["paper"].x, theirs.x) and torch.equal(ours.y, theirs.y)
    edges = ours.data["paper", "cites", "paper"].edge_index
    assert torch.equal(coalesce(edges, num_nodes=2708), coalesce(theirs.edge_index, num_nodes=2708))
    for part in ("train", "val", "test"):
        mask = getattr(theirs, f"{part}_mask")
        assert torch.equal(torch.sort(ours.split[part]).values, mask.nonzero().flatten())
