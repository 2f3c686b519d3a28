"""Crystal graph loading (hgimb/data/crystal.py) and crystal models (hgimb/models/cgcnn.py)."""
import itertools
import json
import math
import shutil
import warnings

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from conftest import real_path
from hgimb.data import crystal, load_dataset
from hgimb.errors import HgimbError
from hgimb.models import ModelConfig, build_model
from hgimb.models.cgcnn import CGCNN, CrystalGAT, FactoredCGConv

ATOM_FEATURES = {11: [1.0, 0.0, 0.5], 17: [0.0, 1.0, 0.25], 19: [1.0, 1.0, 0.0], 8: [0.2, 0.3, 0.4],
                 22: [0.9, 0.1, 0.7], 55: [0.5, 0.5, 0.5]}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HGIMB_CACHE", str(tmp_path / "cache"))


def rocksalt(a=5.64):
    """Conventional NaCl cell (8 atoms), written out (Structure.from_spacegroup is slow)."""
    fcc = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    coords = np.concatenate([fcc, (fcc + 0.5) % 1.0])
    return Structure(Lattice.cubic(a), ["Na"] * 4 + ["Cl"] * 4, coords)


def triclinic():
    """A low-symmetry cell: no two neighbour distances of an atom coincide."""
    lattice = Lattice.from_parameters(4.1, 4.7, 5.3, 81.0, 97.0, 104.0)
    return Structure(lattice, ["Ti", "O", "O"], [[0.03, 0.07, 0.11], [0.41, 0.29, 0.63], [0.77, 0.58, 0.21]])


def write_dir(path, structures, targets, atom_init=ATOM_FEATURES):
    """A CGCNN-format directory: ``structures`` id -> Structure, ``targets`` list of id_prop lines."""
    path.mkdir(parents=True, exist_ok=True)
    for item_id, structure in structures.items():
        structure.to(filename=str(path / f"{item_id}.cif"))
    (path / "id_prop.csv").write_text("".join(line + "\n" for line in targets))
    if atom_init is not None:
        (path / "atom_init.json").write_text(json.dumps({str(k): v for k, v in atom_init.items()}))
    return path


def brute_force_neighbours(structure, radius, max_neighbors):
    """Per atom: the sorted distances of its nearest periodic neighbours (no self at 0), computed
    by enumerating lattice images with plain numpy (independent of pymatgen's neighbour search)."""
    lattice = structure.lattice.matrix
    cart = structure.cart_coords
    volume = abs(np.linalg.det(lattice))
    heights = [volume / np.linalg.norm(np.cross(lattice[(i + 1) % 3], lattice[(i + 2) % 3])) for i in range(3)]
    reach = [int(math.ceil(radius / h)) + 1 for h in heights]
    images = np.array(list(itertools.product(*[range(-r, r + 1) for r in reach])), dtype=float) @ lattice
    out = []
    for i in range(len(structure)):
        d = np.linalg.norm(cart[None, :, :] + images[:, None, :] - cart[i], axis=-1)  # images x atoms
        img, atom = np.nonzero((d <= radius) & (d > 1e-8))
        dist = d[img, atom]
        order = np.argsort(dist, kind="stable")[:max_neighbors]
        out.append((atom[order], dist[order]))
    return out


def graph_neighbours(graph):
    """Per centre atom: (neighbour indices, distances) from a graph, nearest first."""
    src, dst = graph.edge_index.numpy()
    dist = graph.dist.numpy()
    out = []
    for i in range(graph.num_nodes):
        mask = dst == i
        order = np.argsort(dist[mask], kind="stable")
        out.append((src[mask][order], dist[mask][order]))
    return out


# ---------------------------------------------------------------------------- graph correctness
@pytest.mark.parametrize("radius, max_neighbors", [(8.0, 12), (3.5, 12), (6.0, 40)])
def test_graph_matches_brute_force_neighbours(tmp_path, radius, max_neighbors):
    structures = {"nacl": rocksalt(), "tio2": triclinic()}
    d = write_dir(tmp_path / "d", structures, ["nacl,0", "tio2,1"])
    task = crystal.load_crystal_dir(d, name="t", radius=radius, max_neighbors=max_neighbors)
    for graph, structure, name in zip(task.graphs, structures.values(), structures):
        reread = Structure.from_file(str(d / f"{name}.cif"))
        expected = brute_force_neighbours(reread, radius, max_neighbors)
        got = graph_neighbours(graph)
        assert graph.num_nodes == len(structure)
        for (exp_atoms, exp_dist), (got_atoms, got_dist) in zip(expected, got):
            assert len(got_dist) == len(exp_dist)
            np.testing.assert_allclose(got_dist, exp_dist, atol=1e-4)
            if name == "tio2":  # no ties: the neighbour identities must match too
                assert got_atoms.tolist() == exp_atoms.tolist()
    nacl = task.graphs[0]
    if radius == 3.5:  # rocksalt: 6 nearest neighbours at a/2, the next shell (a/sqrt 2 = 3.99) is out
        assert torch.bincount(nacl.edge_index[1]).tolist() == [6] * 8
        torch.testing.assert_close(nacl.dist, torch.full_like(nacl.dist, 5.64 / 2), atol=1e-4, rtol=0)
    # edges point neighbour -> centre and only between atoms of the other element at the first shell
    z = torch.tensor([site.specie.Z for site in Structure.from_file(str(d / "nacl.cif"))])
    first_shell = nacl.dist < 2.9
    src, dst = nacl.edge_index[:, first_shell]
    assert bool((z[src] != z[dst]).all())


def test_gaussian_expansion_values(tmp_path):
    centers = crystal.gaussian_centers(8.0, 0.2)
    assert len(centers) == 41 and centers[0] == 0 and centers[-1] == pytest.approx(8.0)
    assert len(crystal.gaussian_centers(8.0, 0.3)) == 27  # 0 .. 7.8
    dist = torch.tensor([0.0, 2.82, 7.9])
    expanded = crystal.gaussian_expand(dist, 8.0, 0.2)
    for row, dd in zip(expanded, dist.tolist()):
        expected = [math.exp(-((dd - mu) ** 2) / 0.2**2) for mu in centers]
        np.testing.assert_allclose(row.numpy(), expected, rtol=1e-5, atol=1e-7)
    assert expanded[1].argmax().item() == 14  # 2.82 is nearest to the centre 2.8
    d = write_dir(tmp_path / "d", {"a": rocksalt(), "b": triclinic()}, ["a,0", "b,1"])
    task = crystal.load_crystal_dir(d, name="t", gaussian_step=0.5)
    graph = task.graphs[1]
    assert graph.edge_attr.shape == (graph.edge_index.size(1), 17)
    torch.testing.assert_close(graph.edge_attr, crystal.gaussian_expand(graph.dist, 8.0, 0.5))


def test_node_features_from_atom_init_and_one_hot(tmp_path):
    d = write_dir(tmp_path / "d", {"a": rocksalt(), "b": triclinic()}, ["a,0", "b,1"])
    task = crystal.load_crystal_dir(d, name="t")
    z = [site.specie.Z for site in Structure.from_file(str(d / "a.cif"))]
    torch.testing.assert_close(task.graphs[0].x, torch.tensor([ATOM_FEATURES[v] for v in z]))
    assert task.meta["atom_features"] == "atom_init.json"
    (d / "atom_init.json").unlink()
    task = crystal.load_crystal_dir(d, name="t")
    x = task.graphs[0].x
    assert x.shape == (8, 118) and x.sum(1).tolist() == [1.0] * 8
    assert x.argmax(1).tolist() == [v - 1 for v in z]


# ---------------------------------------------------------------------------- caching
def test_second_load_parses_nothing_and_changed_cif_reparses_only_itself(tmp_path, monkeypatch):
    structures = {"a": rocksalt(), "b": triclinic(), "c": rocksalt(5.0)}
    d = write_dir(tmp_path / "d", structures, ["a,0", "b,1", "c,0"])
    first = crystal.load_crystal_dir(d, name="t")
    assert first.meta["parsed_files"] == 3

    real_parse = crystal._parse_cif
    state = {"refuse": True, "calls": 0}

    def patched(text, radius, max_neighbors):
        if state["refuse"]:
            raise AssertionError("parsed a CIF although the cache holds it")
        state["calls"] += 1
        return real_parse(text, radius, max_neighbors)

    monkeypatch.setattr(crystal, "_parse_cif", patched)
    second = crystal.load_crystal_dir(d, name="t")
    assert second.meta["parsed_files"] == 0
    for g1, g2 in zip(first.graphs, second.graphs):
        for key in ("x", "edge_index", "edge_attr", "dist", "y"):
            assert torch.equal(g1[key], g2[key])
    # another Gaussian step or atom_init.json reuses the cached neighbour lists
    assert crystal.load_crystal_dir(d, name="t", gaussian_step=0.4).graphs[0].edge_attr.size(1) == 21
    (d / "atom_init.json").unlink()
    assert crystal.load_crystal_dir(d, name="t").graphs[0].x.size(1) == 118

    state["refuse"] = False
    rocksalt(5.3).to(filename=str(d / "c.cif"))
    changed = crystal.load_crystal_dir(d, name="t")
    assert state["calls"] == 1 and changed.meta["parsed_files"] == 1
    assert changed.graphs[2].dist.min().item() == pytest.approx(5.3 / 2, abs=1e-4)
    assert torch.equal(changed.graphs[0].dist, first.graphs[0].dist)
    # a different radius is a different cache entry: everything parses again
    crystal.load_crystal_dir(d, name="t", radius=6.0)
    assert state["calls"] == 4


def test_process_pool_gives_the_same_graphs(tmp_path, monkeypatch):
    # enough distinct files for the pool path; compare with the in-process path (separate caches)
    structures = {f"s{i}": rocksalt(5.0 + 0.02 * i) if i % 2 else triclinic().copy() for i in range(34)}
    for i, s in enumerate(structures.values()):
        if i % 2 == 0:
            s.scale_lattice(s.volume * (1 + 0.01 * i))
    d = write_dir(tmp_path / "d", structures, [f"s{i},{i % 2}" for i in range(34)])
    pooled = crystal.load_crystal_dir(d, name="t", workers=2, quiet=True)
    assert pooled.meta["parsed_files"] == 34
    monkeypatch.setenv("HGIMB_CACHE", str(tmp_path / "cache2"))
    serial = crystal.load_crystal_dir(d, name="t", workers=1)
    for g1, g2 in zip(pooled.graphs, serial.graphs):
        assert torch.equal(g1.edge_index, g2.edge_index) and torch.equal(g1.dist, g2.dist)


# ---------------------------------------------------------------------------- labels
def test_threshold_labelling(tmp_path):
    structures = {"a": rocksalt(), "b": triclinic(), "c": rocksalt(5.0), "d": rocksalt(6.0)}
    d = write_dir(tmp_path / "d", structures, ["a,299.5", "b,612.25", "c,600", "d,1e3"])
    task = crystal.load_crystal_dir(d, name="t", threshold=600)
    assert task.class_names == ["<=600", ">600"]
    assert task.y.tolist() == [0, 1, 0, 1]
    assert [int(g.y) for g in task.graphs] == [0, 1, 0, 1]
    np.testing.assert_array_equal(task.meta["raw_target"], [299.5, 612.25, 600.0, 1000.0])
    assert task.item_ids.tolist() == ["a", "b", "c", "d"]
    assert task.kind == "graph" and task.split == {} and task.target_types == []
    with pytest.raises(HgimbError, match="pass --threshold"):
        crystal.load_crystal_dir(d, name="t")
    with pytest.raises(HgimbError, match="one class"):
        crystal.load_crystal_dir(d, name="t", threshold=5000)


def test_integer_labels_multiclass(tmp_path):
    structures = {"a": rocksalt(), "b": triclinic(), "c": rocksalt(5.0), "d": rocksalt(6.0)}
    d = write_dir(tmp_path / "d", structures, ["a,7", "b,1", "c,3", "d,7"])
    task = crystal.load_crystal_dir(d, name="t")
    assert task.class_names == ["1", "3", "7"] and task.y.tolist() == [2, 0, 1, 2]
    assert task.num_classes == 3


# ---------------------------------------------------------------------------- bad input
BAD_CASES = {
    # case: (id_prop lines, files to break, expected message fragments)
    "missing cif": (["a,0", "b,1", "gone,0"], {}, ["gone.cif", "not found", "line 3"]),
    "unparsable cif": (["a,0", "b,1", "junk,1"], {"junk": "this is not a CIF\n"}, ["junk.cif", "id junk", "does not parse"]),
    "nan target": (["a,0", "b,1", "c,nan"], {}, ["id_prop.csv line 3", "id c", "nan"]),
    "non-numeric target": (["a,0", "b,1", "c,hot"], {}, ["id_prop.csv line 3", "'hot'", "id c"]),
    "duplicate id": (["a,0", "b,1", "a,1"], {}, ["id_prop.csv line 3", "id a", "twice", "line 1"]),
    "malformed line": (["a,0", "b,1", "c,0,extra"], {}, ["id_prop.csv line 3", "expected 'id,target'"]),
    "missing element": (["a,0", "b,1", "ag,1"], {}, ["ag.cif", "id ag", "Ag (Z=47)", "atom_init.json"]),
    # issue 16: an id must not reach a CIF outside the dataset folder
    "path outside the folder": (["a,0", "b,1", "../x,1"], {"../x": "valid"}, ["line 3", "'../x'", "not a plain file name"]),
    # issue 16: pymatgen's "integer out of bounds for int16" / "integer modulo by zero" made readable
    "unknown element symbol": (["a,0", "b,1", "xx,1"], {"xx": "Xx"}, ["xx.cif", "id xx", "'Xx'", "not chemical elements"]),
    "no atoms": (["a,0", "b,1", "empty,1"], {"empty": "no atoms"}, ["empty.cif", "id empty", "no atom sites"]),
    "no atom loop": (["a,0", "b,1", "empty,1"], {"empty": "no atom loop"}, ["empty.cif", "id empty", "no atom sites"]),
}


def _broken_cif(kind: str) -> str:
    text = rocksalt().to(fmt="cif")
    if kind == "valid":
        return text
    if kind == "Xx":
        return text.replace(" Na ", " Xx ").replace("Na0", "Xx0")
    if kind == "no atoms":  # the atom-site loop without rows (issue 16: "integer modulo by zero")
        return "\n".join(line for line in text.splitlines() if not line.startswith(("  Na", "  Cl")))
    if kind == "no atom loop":  # header and symmetry loop only
        return text.split("loop_\n _atom_site_type_symbol")[0]
    return kind


def _bad_dir(tmp_path, case):
    lines, broken, _ = BAD_CASES[case]
    structures = {"a": rocksalt(), "b": triclinic(), "c": rocksalt(5.0),
                  "ag": Structure(Lattice.cubic(4.1), ["Ag", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])}
    d = write_dir(tmp_path / case.replace(" ", "_"), structures, lines)
    for item_id, text in broken.items():
        (d / f"{item_id}.cif").write_text(_broken_cif(text))
    return d


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_one_line_message(tmp_path, case):
    d = _bad_dir(tmp_path, case)
    with pytest.raises(HgimbError) as info:
        crystal.load_crystal_dir(d, name="t")
    message = str(info.value)
    assert "\n" not in message
    for fragment in BAD_CASES[case][2]:
        assert fragment in message, (fragment, message)
    assert "--skip-bad" in message


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_skip_bad_drops_the_row_with_a_warning(tmp_path, case):
    d = _bad_dir(tmp_path, case)
    with pytest.warns(UserWarning, match="skipped 1 bad row") as caught:
        task = crystal.load_crystal_dir(d, name="t", skip_bad=True)
    assert task.item_ids.tolist() == ["a", "b"]
    assert len(task.graphs) == 2 and len(task.meta["skipped"]) == 1
    # issue 16: one line, no internal source path
    shown = warnings.formatwarning(caught[0].message, caught[0].category, caught[0].filename, caught[0].lineno)
    assert shown.count("\n") == 1 and ".py" not in shown and shown.startswith("warning: ")


def test_nan_in_atom_init_is_a_clear_error(tmp_path):
    features = {**ATOM_FEATURES, 17: [0.0, float("nan"), 0.25]}
    d = write_dir(tmp_path / "d", {"a": rocksalt(), "b": triclinic()}, ["a,0", "b,1"], atom_init=features)
    (d / "atom_init.json").write_text((d / "atom_init.json").read_text().replace("NaN", "NaN"))
    with pytest.raises(HgimbError, match=r"atom_init.json: element 17 has a non-finite feature value \(nan at position 1\)"):
        crystal.load_crystal_dir(d, name="t")


def test_fast_data_equals_pyg_data():
    from torch_geometric.data import Data

    values = dict(x=torch.randn(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]), y=torch.tensor([1]), num_nodes=3)
    fast, slow = crystal._data(**values), Data(**values)
    assert fast.keys() == slow.keys() and fast.num_nodes == slow.num_nodes == 3
    for key in slow.keys():
        if isinstance(slow[key], torch.Tensor):
            assert torch.equal(fast[key], slow[key])


def test_edge_feature_cache_is_reused_and_exact(tmp_path):
    d = write_dir(tmp_path / "d", {"a": rocksalt(), "b": triclinic()}, ["a,0", "b,1"])
    first = crystal.load_crystal_dir(d, name="t")
    files = sorted((tmp_path / "cache" / "crystal").glob("*.pt"))
    assert len(files) == 2  # parsed graphs + edge features
    second = crystal.load_crystal_dir(d, name="t")
    for g1, g2 in zip(first.graphs, second.graphs):
        assert torch.equal(g1.edge_attr, g2.edge_attr)
        assert torch.equal(g2.edge_attr, crystal.gaussian_expand(g2.dist, 8.0, 0.2))
    assert sorted((tmp_path / "cache" / "crystal").glob("*.pt")) == files
    assert not list((tmp_path / "cache" / "crystal").glob("*.tmp"))


def test_skip_bad_counts_all_and_fails_when_nothing_is_left(tmp_path):
    structures = {"a": rocksalt(), "b": triclinic(), "c": rocksalt(5.0)}
    d = write_dir(tmp_path / "d", structures, ["a,0", "b,1", "c,x", "c,1", "gone,1", "oops"])
    with pytest.warns(UserWarning, match="skipped 3 bad row"):
        task = crystal.load_crystal_dir(d, name="t", skip_bad=True)
    assert task.item_ids.tolist() == ["a", "b", "c"]
    (d / "id_prop.csv").write_text("gone,1\nc,nan\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(HgimbError, match="no usable samples"):
            crystal.load_crystal_dir(d, name="t", skip_bad=True)


def test_missing_id_prop_and_unknown_options(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HgimbError, match="id_prop.csv not found"):
        load_dataset(f"crystal:{tmp_path / 'empty'}", tmp_path)
    with pytest.raises(HgimbError, match="not found"):
        load_dataset(f"crystal:{tmp_path / 'nowhere'}", tmp_path)
    d = write_dir(tmp_path / "d", {"a": rocksalt(), "b": triclinic()}, ["a,0", "b,1"])
    with pytest.raises(HgimbError, match="unknown --dataset-option hidden"):
        load_dataset(f"crystal:{d}", tmp_path, hidden=3)
    (d / "atom_init.json").write_text("{not json")
    with pytest.raises(HgimbError, match="atom_init.json is not a JSON object"):
        load_dataset(f"crystal:{d}", tmp_path)
    (d / "atom_init.json").write_text('{"11": [1, 2], "17": [1, 2, 3]}')
    with pytest.raises(HgimbError, match="same length"):
        load_dataset(f"crystal:{d}", tmp_path)
    (d / "atom_init.json").unlink()
    with pytest.raises(HgimbError, match="max_neighbors must be an integer >= 1, got 0"):
        load_dataset(f"crystal:{d}", tmp_path, max_neighbors=0)
    # prefix with a directory, with the id_prop file, and relative to <root>/crystals
    assert len(load_dataset(f"crystal:{d}", tmp_path).graphs) == 2
    assert len(load_dataset(f"crystal:{d / 'id_prop.csv'}", tmp_path).graphs) == 2
    (tmp_path / "crystals").mkdir()
    shutil.copytree(d, tmp_path / "crystals" / "mine")
    assert load_dataset("crystal:mine", tmp_path).item_ids.tolist() == ["a", "b"]


def test_cgcnn_sample_loads():
    root = real_path("crystals", "cgcnn-sample").parent.parent
    task = load_dataset("cgcnn-sample", root, quiet=True)
    assert len(task.graphs) == 10 and task.num_items == 10
    assert task.class_names == ["0", "1"] and task.y.tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    assert task.item_ids[0] == "1000041"
    for graph in task.graphs:
        assert graph.x.size(1) == 92 and graph.edge_attr.size(1) == 41
        assert int(torch.bincount(graph.edge_index[1]).max()) <= 12
        assert float(graph.dist.max()) <= 8.0


# ---------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def sample_task(tmp_path_factory):
    root = real_path("crystals", "cgcnn-sample").parent.parent
    with pytest.MonkeyPatch.context() as mp:  # module-scoped: a cache of its own
        mp.setenv("HGIMB_CACHE", str(tmp_path_factory.mktemp("cache")))
        return load_dataset("cgcnn-sample", root, quiet=True)


def _batch(graphs):
    from torch_geometric.data import Batch

    return Batch.from_data_list(list(graphs))


@pytest.mark.parametrize("name, cls", [("cgcnn", CGCNN), ("gat", CrystalGAT)])
def test_models_forward_backward(sample_task, name, cls):
    torch.manual_seed(0)
    model = build_model(name, sample_task, ModelConfig(hidden=32, layers=3, heads=2, dropout=0.1))
    assert isinstance(model, cls)
    batch = _batch(sample_task.graphs[:6])
    logits = model(batch)
    assert logits.shape == (6, 2)
    assert model.encode(batch).shape == (6, model.out_dim)
    torch.nn.functional.cross_entropy(logits, batch.y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0


@pytest.mark.parametrize("batch_norm", [True, False])
def test_factored_cgconv_equals_pyg_cgconv(batch_norm):
    from torch_geometric.nn import CGConv

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 16, generator=gen, requires_grad=True)
    edge_index = torch.randint(0, 30, (2, 200), generator=gen)
    edge_attr = torch.rand(200, 9, generator=gen)
    torch.manual_seed(0)
    conv = FactoredCGConv(16, 9, batch_norm=batch_norm)
    out = conv(x, edge_index, edge_attr)
    reference = CGConv.forward(conv, x, edge_index, edge_attr)  # PyG's own message passing
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    grad = torch.autograd.grad(out.square().sum(), [x, conv.lin_f.weight, conv.lin_s.bias])
    grad_ref = torch.autograd.grad(reference.square().sum(), [x, conv.lin_f.weight, conv.lin_s.bias])
    for g, r in zip(grad, grad_ref):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)
    conv.eval()
    torch.testing.assert_close(conv(x, edge_index, edge_attr), CGConv.forward(conv, x, edge_index, edge_attr),
                               atol=1e-5, rtol=1e-5)


def test_gaussian_features_have_no_subnormals(sample_task):
    # subnormal floats make CPU matmuls several times slower; the far tails are flushed to 0
    edge_attr = torch.cat([g.edge_attr for g in sample_task.graphs])
    assert not bool(((edge_attr > 0) & (edge_attr < torch.finfo(torch.float32).tiny)).any())
    assert bool((edge_attr == 0).any())


def test_cgcnn_config_mapping_and_options(sample_task):
    model = build_model("cgcnn", sample_task, ModelConfig(hidden=64, layers=3, dropout=0.5))
    assert len(model.convs) == 3 and model.embedding.out_features == 64
    assert model.out_dim == 128 and model.head.in_features == 128
    model = build_model("cgcnn", sample_task, ModelConfig(layers=1, options={"fc_hidden": 16, "fc_layers": 2,
                                                                            "pool": "max"}))
    assert model.out_dim == 16 and len(model.fcs) == 1 and len(model.convs) == 1
    with pytest.raises(HgimbError, match="valid options"):
        build_model("cgcnn", sample_task, ModelConfig(options={"width": 3}))
    with pytest.raises(HgimbError, match="pool"):
        build_model("gat", sample_task, ModelConfig(options={"pool": "median"}))


@pytest.mark.parametrize("name", ["cgcnn", "gat"])
def test_loss_decreases_on_cgcnn_sample(sample_task, name):
    torch.manual_seed(0)
    model = build_model(name, sample_task, ModelConfig(hidden=32, layers=3, heads=2, dropout=0.0))
    batch = _batch(sample_task.graphs)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch), batch.y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_eval_outputs_do_not_depend_on_batch_order(sample_task):
    torch.manual_seed(0)
    model = build_model("cgcnn", sample_task, ModelConfig(hidden=32, layers=3, dropout=0.5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    graphs = sample_task.graphs
    for _ in range(3):  # move BatchNorm's running statistics away from their initial values
        optimizer.zero_grad()
        batch = _batch(graphs)
        torch.nn.functional.cross_entropy(model(batch), batch.y).backward()
        optimizer.step()
    perm = torch.randperm(len(graphs), generator=torch.Generator().manual_seed(1)).tolist()
    model.eval()
    with torch.no_grad():
        ordered = model(_batch(graphs))
        shuffled = model(_batch([graphs[i] for i in perm]))
        alone = torch.cat([model(_batch([g])) for g in graphs])
    torch.testing.assert_close(shuffled, ordered[perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, ordered, atol=1e-5, rtol=1e-5)
    # the property is real: in training mode BatchNorm uses batch statistics and outputs change
    model.train()
    torch.manual_seed(2)
    with torch.no_grad():
        train_full = model.encode(_batch(graphs))[:3]
        torch.manual_seed(2)
        train_part = model.encode(_batch(graphs[:3]))
    assert not torch.allclose(train_full, train_part, atol=1e-4)
