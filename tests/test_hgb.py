"""HGB-format reader: exact contents of a tiny graph in every layout, errors that name file and
line, the registry/download messages, the cache, and the real Freebase / ACM files."""
import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hgimb.data import hgb, load_dataset
from hgimb.data import download as dl
from hgimb.data.hgb import load_hgb_task, read_hgb
from hgimb.errors import HgimbError

from conftest import real_path

# ----------------------------------------------------------------------------- a tiny HGB graph
# movies 0,1,2,3 (type 0, 2-dim features), actors 5,4 (type 1, no features): actor ids are out of
# order and interleaved with movies, so local indices differ from HGB ids.
NODES = ["0\tm0\t0\t0.5,1", "1\t\t0\t1,0", "5\ta0\t1", "2\tm2\t0\t0,0", "3\t\t0\t2.5,-1", "4\ta1\t1"]
LINKS = ["0\t5\t0\t1.0", "1\t4\t0\t1.0", "5\t0\t1\t1.0", "4\t1\t1\t1.0", "0\t1\t2\t0.5", "2\t3\t2\t2.0"]
LABELS = ["0\t\t0\t0", "2\t\t0\t1"]
TEST_LABELS = ["1\t\t0\t1", "3\t\t0\t0"]
INFO_TEXT = [
    "node.dat", "", "TYPE\tMEANING", "0\t\tMOVIE", "1\t\tACTOR", "", "Attribute Dimension: 2", "",
    "-----------------------------------------------", "", "link.dat", "", "LINK\tSTART\tEND\tMEANING",
    "0\t\t0\t\t1\tMOVIE-starring-ACTOR", "1\t\t1\t\t0\tACTOR-in-MOVIE", "2\t\t0\t\t0\tMOVIE-MOVIE", "",
    "-----------------------------------------------", "", "label.dat", "", "TYPE\tCLASS\tMEANING",
    "0\t\t0\t\tgood film", "0\t\t1\t\tbad film", "", "Targeting: Label Type 0",
]
INFO_JSON = json.dumps({
    "node.dat": {"node type": {"0": "movie", "1": "actor"}},
    "link.dat": {"link type": {
        "0": {"start": 0, "end": 1, "meaning": "movie-starring-actor"},
        "1": {"start": 1, "end": 0, "meaning": "actor-in-movie"},
        "2": {"start": 0, "end": 0, "meaning": "movie-movie"},
    }},
    "label.dat": {"node type": {"0": {"0": "good film", "1": "bad film"}}},
}, indent=4).split("\n")


def write_hgb(root: Path, *, crlf=False, features=True, info="text", container="dir", name="Tiny", **files) -> Path:
    """Write the tiny graph (``files`` override whole files as lists of lines; None drops one)."""
    nodes = NODES if features else ["\t".join(line.split("\t")[:3]) for line in NODES]
    content = {"node.dat": nodes, "link.dat": LINKS, "label.dat": LABELS, "label.dat.test": TEST_LABELS,
               "info.dat": {"text": INFO_TEXT, "json": INFO_JSON, "missing": None}[info],
               "README.txt": ["an unknown extra file, ignored"]}
    content.update({key.replace("_", "."): value for key, value in files.items()})  # label_dat_test -> label.dat.test
    eol = "\r\n" if crlf else "\n"
    blobs = {f: (eol.join(lines) + eol).encode() for f, lines in content.items() if lines is not None}
    root.mkdir(parents=True, exist_ok=True)
    if container == "dir":
        folder = root / name
        folder.mkdir()
        for f, blob in blobs.items():
            (folder / f).write_bytes(blob)
        return folder
    path = root / f"{name}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for f, blob in blobs.items():
            zf.writestr(f"{name}/{f}", blob)
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HGIMB_CACHE", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- exact contents
@pytest.mark.parametrize("container", ["dir", "zip"])
@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("info", ["text", "json", "missing"])
@pytest.mark.parametrize("features", [True, False])
def test_tiny_graph_exact(tmp_path, container, crlf, info, features):
    path = write_hgb(tmp_path, crlf=crlf, features=features, info=info, container=container)
    data, meta = read_hgb(path)
    named = info != "missing"
    movie, actor = ("movie", "actor") if named else ("type0", "type1")
    starring = (movie, "starring", actor) if named else (movie, "link0", actor)
    acted_in = (actor, "in", movie) if named else (actor, "link1", movie)
    movie_movie = (movie, "to_movie", movie) if named else (movie, "link2", movie)

    assert sorted(data.node_types) == sorted([movie, actor])
    assert data[movie].num_nodes == 4 and data[actor].num_nodes == 2
    if features:
        assert torch.equal(data[movie].x, torch.tensor([[0.5, 1], [1, 0], [0, 0], [2.5, -1]]))
        assert data[movie].x.dtype == torch.float32
    else:
        assert "x" not in data[movie]
    assert "x" not in data[actor]
    assert sorted(data.edge_types) == sorted([starring, acted_in, movie_movie])
    assert data[starring].edge_index.tolist() == [[0, 1], [0, 1]]  # actor 5 -> local 0, actor 4 -> local 1
    assert data[acted_in].edge_index.tolist() == [[0, 1], [0, 1]]
    assert data[movie_movie].edge_index.tolist() == [[0, 2], [1, 3]]
    assert data[movie_movie].edge_weight.tolist() == [0.5, 2.0]
    assert "edge_weight" not in data[starring] and "edge_weight" not in data[acted_in]
    assert data[starring].edge_index.dtype == torch.long

    assert meta.target_type == movie
    assert meta.class_names == (["good film", "bad film"] if named else ["class0", "class1"])
    assert meta.node_ids[movie].tolist() == [0, 1, 2, 3] and meta.node_ids[actor].tolist() == [5, 4]
    assert meta.train_index.tolist() == [0, 2] and meta.train_y.tolist() == [0, 1]
    assert meta.test_index.tolist() == [1, 3] and meta.test_y.tolist() == [1, 0]
    assert meta.info_layout == info
    assert meta.edge_types == {0: starring, 1: acted_in, 2: movie_movie}
    assert meta.feature_dims == ({movie: 2} if features else {})


def test_task_from_hgb(tmp_path):
    path = write_hgb(tmp_path, container="zip")
    task = load_hgb_task(path, "tiny")
    assert task.kind == "node" and task.name == "tiny" and task.target_types == ["movie"]
    assert task.y.tolist() == [0, 1, 1, 0]
    assert task.split["train"].tolist() == [0, 2] and task.split["test"].tolist() == [1, 3]
    assert task.split["val"].numel() == 0 and task.split["val"].dtype == torch.long
    assert task.item_ids.tolist() == [0, 1, 2, 3]
    assert task.meta["official_split"] is True and task.meta["source"] == str(path)
    assert task.class_names == ["good film", "bad film"]
    task.validate()


def test_unlabelled_target_nodes_are_minus_one_and_test_file_optional(tmp_path):
    task = load_hgb_task(write_hgb(tmp_path, label_dat_test=None), "tiny")
    # no label.dat.test: no official test split (the official split is refused, not run empty)
    assert task.y.tolist() == [0, -1, 1, -1] and "test" not in task.split
    from hgimb.data.splits import make_split

    with pytest.raises(HgimbError, match="without 'test'"):
        make_split(task, split="official")


def test_blank_lines_and_missing_final_newline(tmp_path):
    folder = write_hgb(tmp_path, link_dat=["", *LINKS[:3], "", *LINKS[3:]])
    (folder / "label.dat").write_bytes(b"0\t\t0\t0\r\n2\t\t0\t1")  # CRLF and no final newline
    data, meta = read_hgb(folder)
    assert data["movie", "to_movie", "movie"].edge_index.tolist() == [[0, 2], [1, 3]]
    assert meta.train_y.tolist() == [0, 1]


def test_relation_names_stay_unique(tmp_path):
    info = ["LINK\tSTART\tEND\tMEANING", "0\t0\t1\tMOVIE-starring-ACTOR", "1\t1\t0\tACTOR-in-MOVIE",
            "2\t0\t0\tmovie-movie", "3\t0\t0\tmovie-movie"]
    links = [*LINKS, "1\t2\t3\t1.0"]
    data, meta = read_hgb(write_hgb(tmp_path, info_dat=info, link_dat=links))
    assert meta.edge_types[2] == ("type0", "to_movie", "type0")
    assert meta.edge_types[3] == ("type0", "to_movie_3", "type0")
    assert data["type0", "to_movie_3", "type0"].edge_index.tolist() == [[1], [2]]


# ----------------------------------------------------------------------------- errors
def _error(tmp_path, **files) -> str:
    crlf = files.pop("crlf", False)
    path = write_hgb(tmp_path, crlf=crlf, container=files.pop("container", "dir"), **files)
    with pytest.raises(HgimbError) as info:
        read_hgb(path, cache=False)
    message = str(info.value)
    assert "\n" not in message
    return message


def _replace(lines, number, new):
    lines = list(lines)
    lines[number - 1] = new
    return lines


BAD = {
    "node columns": (dict(node_dat=_replace(NODES, 3, "5\ta0")), "node.dat line 3: 2 tab-separated column(s)"),
    "node type not int": (dict(node_dat=_replace(NODES, 2, "1\t\tx\t1,0")), "node.dat line 2: node type 'x' is not an integer"),
    "node id not int": (dict(node_dat=_replace(NODES, 5, "3.5\t\t0\t2.5,-1")), "node.dat line 5: node id '3.5' is not an integer"),
    "duplicate node": (dict(node_dat=[*NODES, "0\tdup\t0\t1,1"]), "node.dat line 7: node id 0 appears twice (also line 1)"),
    "feature length": (dict(node_dat=_replace(NODES, 4, "2\tm2\t0\t0,0,1")), "node.dat line 4: feature vector of length 3"),
    "feature missing": (dict(node_dat=_replace(NODES, 4, "2\tm2\t0")), "node.dat line 4: node of type 'movie' lacks features"),
    "feature not number": (dict(node_dat=_replace(NODES, 1, "0\tm0\t0\t0.5,abc")), "node.dat line 1: feature value 'abc'"),
    "link columns": (dict(link_dat=_replace(LINKS, 2, "1\t4")), "link.dat line 2: 2 tab-separated column(s)"),
    "link id not int": (dict(link_dat=_replace(LINKS, 4, "four\t1\t1\t1.0")), "link.dat line 4: source id 'four' is not an integer"),
    "link unknown node": (dict(link_dat=_replace(LINKS, 2, "1\t99\t0\t1.0")), "link.dat line 2: target node id 99 is not in node.dat"),
    "link bad weight": (dict(link_dat=_replace(LINKS, 1, "0\t5\t0\tabc")), "link.dat line 1: weight 'abc' is not a finite number"),
    "link wrong endpoints": (dict(link_dat=_replace(LINKS, 2, "5\t4\t0\t1.0")),
                             "link.dat line 2: link type 0 connects actor -> actor, but info.dat declares movie -> actor"),
    "label unknown node": (dict(label_dat=_replace(LABELS, 2, "42\t\t0\t1")), "label.dat line 2: labelled node id 42 is not in node.dat"),
    "label off target": (dict(label_dat=_replace(LABELS, 1, "5\t\t1\t0")),
                         "label.dat line 1: node 5 is of type 'actor', but the labelled (target) type is 'movie'"),
    "label type column": (dict(label_dat=_replace(LABELS, 1, "0\t\t1\t0")), "label.dat line 1: node 0 has type 0 in node.dat, not 1"),
    "label not int": (dict(label_dat=_replace(LABELS, 2, "2\t\t0\tbad")), "label.dat line 2: label 'bad' is not a class number"),
    "label beyond info": (dict(label_dat=_replace(LABELS, 2, "2\t\t0\t5")), "label.dat line 2: label 5, but info.dat lists 2 classes"),
    "label twice": (dict(label_dat_test=[*TEST_LABELS, "0\t\t0\t1"]), "label.dat.test line 3: node 0 is labelled twice (also"),
    "label columns": (dict(label_dat=_replace(LABELS, 2, "2\t0\t1")), "label.dat line 2: 3 tab-separated column(s), expected 4"),
    "multi-label": (dict(label_dat_test=_replace(TEST_LABELS, 2, "3\t\t0\t0,1")),
                    "multi-label datasets are not supported yet: "),
    "info text row": (dict(info_dat=_replace(INFO_TEXT, 14, "0\t\t0\tx\tMOVIE-starring-ACTOR")), "info.dat line 14: malformed link row"),
    "info json": (dict(info_dat=["{", '  "node.dat": {,', "}"]), "info.dat line 2: not valid JSON"),
    "info neither": (dict(info_dat=["hello", "world"]), "info.dat: neither the HGB text layout"),
    "empty node.dat": (dict(node_dat=[""]), "node.dat: no nodes"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_file_and_line(tmp_path, case):
    files, expected = BAD[case]
    assert expected in _error(tmp_path, **files)


def test_multi_label_message(tmp_path):
    message = _error(tmp_path, container="zip", label_dat_test=_replace(TEST_LABELS, 2, "3\t\t0\t0,1"))
    assert message.startswith("multi-label datasets are not supported yet: ")
    assert message.endswith("Tiny.zip:Tiny/label.dat.test line 2 has labels '0,1'")


def test_line_numbers_count_blank_lines_and_crlf(tmp_path):
    nodes = [NODES[0], "", "1\t\tx\t1,0", *NODES[2:]]
    assert "node.dat line 3: node type 'x'" in _error(tmp_path, crlf=True, node_dat=nodes)


@pytest.mark.parametrize("container", ["dir", "zip"])
@pytest.mark.parametrize("missing", ["node.dat", "link.dat", "label.dat"])
def test_missing_required_file(tmp_path, container, missing):
    message = _error(tmp_path, container=container, **{missing.replace(".", "_"): None})
    assert f"missing {missing}" in message and "Tiny" in message


def test_not_a_dataset(tmp_path):
    (tmp_path / "junk.zip").write_text("not a zip")
    with pytest.raises(HgimbError, match="neither a folder nor a readable zip"):
        read_hgb(tmp_path / "junk.zip")
    with pytest.raises(HgimbError, match="not found"):
        read_hgb(tmp_path / "absent")


# ----------------------------------------------------------------------------- registry
def test_named_dataset_missing_says_where_and_how(tmp_path):
    with pytest.raises(HgimbError) as info:
        load_dataset("acm", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "hgb" / "ACM.zip") in message and str(tmp_path / "hgb" / "ACM") in message
    assert dl.HGB_NC_FOLDER in message and "hgb/ACM.zip" in message


def test_named_dataset_finds_folder_and_checks_options(tmp_path):
    write_hgb(tmp_path / "hgb", name="Freebase")
    task = load_dataset("freebase", root=tmp_path)
    assert task.name == "freebase" and task.y.tolist() == [0, 1, 1, 0]
    with pytest.raises(HgimbError, match="unknown --dataset-option bogus.*valid options: cache, download, node_features, normalize"):
        load_dataset("freebase", root=tmp_path, bogus=1)
    with pytest.raises(HgimbError, match="must be true or false"):
        load_dataset("freebase", root=tmp_path, cache="maybe")
    assert load_dataset("freebase", root=tmp_path, cache="false").num_items == 4


def test_prefix_loads_any_path(tmp_path):
    path = write_hgb(tmp_path, container="zip")
    task = load_dataset(f"hgb:{path}", root=tmp_path / "elsewhere")
    assert task.target_types == ["movie"] and task.num_items == 4
    assert load_dataset("hgb:Tiny.zip", root=tmp_path).num_items == 4  # relative to the data root
    with pytest.raises(HgimbError, match="not found"):
        load_dataset("hgb:nope.zip", root=tmp_path)


# ----------------------------------------------------------------------------- download
def test_download_offline_error_is_clean(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "DRIVE_URL", "http://127.0.0.1:9/{id}")  # discard port: refused at once
    with pytest.raises(HgimbError, match="could not download http://127.0.0.1:9/"):
        dl.download("acm", tmp_path, timeout=5)
    assert not any((tmp_path / "hgb").iterdir())  # no partial file left behind


def test_download_from_url_then_load(tmp_path, monkeypatch):
    zip_path = write_hgb(tmp_path / "remote", container="zip", name="ACM")
    monkeypatch.setattr(dl, "DRIVE_URL", zip_path.as_uri() + "#{id}")
    task = load_dataset("acm", root=tmp_path / "root", download="true")
    assert (tmp_path / "root" / "hgb" / "ACM.zip").is_file() and task.num_items == 4

    not_zip = tmp_path / "page.html"
    not_zip.write_text("<html>quota exceeded</html>")
    monkeypatch.setattr(dl, "DRIVE_URL", not_zip.as_uri() + "#{id}")
    with pytest.raises(HgimbError, match="did not return an HGB zip"):
        dl.download("dblp", tmp_path / "root")
    assert not (tmp_path / "root" / "hgb" / "DBLP.zip").exists()


# ----------------------------------------------------------------------------- cache
def test_cache_reuses_parse_until_files_change(tmp_path, monkeypatch):
    folder = write_hgb(tmp_path)
    first, _ = read_hgb(folder)
    assert list((tmp_path / "cache" / "hgb").glob("*.pt"))

    def no_parse(source):
        raise AssertionError("parsed again")

    monkeypatch.setattr(hgb, "_parse", no_parse)
    again, meta = read_hgb(folder)
    assert torch.equal(again["movie"].x, first["movie"].x) and meta.train_index.tolist() == [0, 2]
    (folder / "label.dat").write_text("0\t\t0\t1\n")  # a changed file is a new fingerprint
    with pytest.raises(AssertionError, match="parsed again"):
        read_hgb(folder)


# ----------------------------------------------------------------------------- real data
def test_freebase_real(data_root):
    real_path("hgb", "Freebase.zip")
    task = load_dataset("freebase", root=data_root)
    data = task.data
    assert {t: data[t].num_nodes for t in data.node_types} == {"movie": 3492, "actor": 33401, "director": 2502, "writer": 4459}
    assert sum(data[e].edge_index.shape[1] for e in data.edge_types) == 151034
    assert sorted(data.edge_types) == sorted([
        ("movie", "starring", "actor"), ("actor", "in", "movie"), ("movie", "directed_by", "director"),
        ("director", "of", "movie"), ("movie", "written_by", "writer"), ("writer", "of", "movie")])
    assert not any("x" in data[t] for t in data.node_types)
    assert task.target_types == ["movie"] and task.num_classes == 3
    assert task.class_counts("train").tolist() == [409, 184, 454]
    assert task.class_counts("test").tolist() == [918, 434, 1093]
    assert int((task.y >= 0).sum()) == 3492
    for e in data.edge_types:  # every edge index stays inside its node types
        src, _, dst = e
        assert int(data[e].edge_index[0].max()) < data[src].num_nodes and int(data[e].edge_index[1].max()) < data[dst].num_nodes
    # each relation is stored in both directions
    forward = data["movie", "starring", "actor"].edge_index
    backward = data["actor", "in", "movie"].edge_index.flip(0)
    key = lambda ei: torch.sort(ei[0] * 100000 + ei[1]).values  # noqa: E731
    assert torch.equal(key(forward), key(backward))
    task.validate()


@pytest.fixture(scope="module")
def acm_loads(tmp_path_factory):
    """ACM loaded twice into a fresh cache: (task, seconds uncached, seconds cached); the second
    load runs with the parser disabled, so it must come from the cache."""
    root = real_path("hgb", "ACM.zip").parent.parent
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HGIMB_CACHE", str(tmp_path_factory.mktemp("acm-cache")))
        start = time.perf_counter()
        load_dataset("acm", root=root)
        uncached = time.perf_counter() - start
        mp.setattr(hgb, "_parse", lambda source: pytest.fail("ACM parsed twice"))
        start = time.perf_counter()
        task = load_dataset("acm", root=root)
        cached = time.perf_counter() - start
    print(f"ACM load: {uncached:.2f} s parsing, {cached:.3f} s from cache")
    return task, uncached, cached


def test_acm_real(acm_loads):
    task, _, _ = acm_loads
    data = task.data
    assert {t: data[t].num_nodes for t in data.node_types} == {"paper": 3025, "author": 5959, "subject": 56, "term": 1902}
    assert data["paper"].x.shape == (3025, 1902) and data["paper"].x.dtype == torch.float32
    # raw 0/1 bag-of-words by default (as HGB feeds them): ~85 terms per paper
    x = data["paper"].x
    assert task.meta["normalized_features"] == [] and set(x.unique().tolist()) == {0.0, 1.0}
    assert 50 < float(x.sum(1).mean()) < 120
    assert "x" not in data["term"]  # term lines carry no features in the HGB ACM files
    assert len(data.edge_types) == 8
    assert sum(data[e].edge_index.shape[1] for e in data.edge_types) == 547872
    assert ("paper", "cite", "paper") in data.edge_types and ("paper", "to_author", "author") in data.edge_types
    assert task.class_names == ["database", "wireless communication", "data mining"]
    assert task.split["train"].numel() == 907 and task.split["test"].numel() == 2118
    assert task.class_counts("train").tolist() == [280, 293, 334]
    assert task.class_counts("test").tolist() == [714, 677, 727]
    assert np.array_equal(task.item_ids, np.arange(3025))  # HGB ids of the papers
    task.validate()


def test_acm_loads_fast_and_cache_is_faster(acm_loads):
    _, uncached, cached = acm_loads
    assert uncached < 30  # a few seconds on a laptop; generous for a loaded CI machine
    assert cached < uncached / 3
