"""Mini-batch training of node tasks: the neighbour sampler and the ``neighbor-sampling`` strategy."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.utils import to_undirected

from hgimb.config import RunConfig
from hgimb.data.synthetic import generate
from hgimb.data.task import Task
from hgimb.engine.batching import BATCHING, NeighborSampling, batching_for
from hgimb.engine.sampling import (HeteroNeighborSampler, choose_without_replacement, fanout_for, make_sampler,
                                   parse_fanout, pyg_sampling_available)
from hgimb.engine.trainer import Trainer
from hgimb.errors import HgimbError
from hgimb.models import ModelConfig, build_model
from hgimb.models.base import declared_hops

WALK = dict(walk_length=6, context_size=3, walks_per_node=1, num_negative=2, epochs=1, batch_walks=64, seed=0)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HGIMB_CACHE", str(tmp_path / "cache"))


def random_graph(seed=0):
    """Two node types, a self relation, hubs (so fanouts bite) and an edge weight; no multi-edges."""
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data["a"].x = torch.randn(80, 5, generator=g)
    data["b"].num_nodes = 50
    data["c"].num_nodes = 7  # reached by nothing: stays empty in every subgraph
    def edges(n_src, n_dst, n, hub_dst=None):
        src = torch.randint(0, n_src, (n,), generator=g)
        dst = torch.randint(0, n_dst, (n,), generator=g)
        if hub_dst is not None:  # one destination with a large in-degree
            src = torch.cat([src, torch.arange(n_src)])
            dst = torch.cat([dst, torch.full((n_src,), hub_dst)])
        key = torch.unique(src * n_dst + dst)
        return torch.stack([key // n_dst, key % n_dst])
    data["a", "to", "b"].edge_index = edges(80, 50, 300, hub_dst=0)
    data["b", "back", "a"].edge_index = edges(50, 80, 300, hub_dst=3)
    data["a", "cites", "a"].edge_index = edges(80, 80, 200)
    data["a", "to", "b"].edge_weight = torch.rand(data["a", "to", "b"].edge_index.size(1), generator=g)
    data["c", "of", "a"].edge_index = torch.empty(2, 0, dtype=torch.long)
    return data


def in_edges(data, edge_type, nodes):
    """Original edge ids into ``nodes`` (global ids of the destination type)."""
    ei = data[edge_type].edge_index
    return set(torch.nonzero(torch.isin(ei[1], nodes)).squeeze(1).tolist())


# ---------------------------------------------------------------------------- the sampler
@pytest.mark.parametrize("fanout", [[3, 2], [1, 4, 2], [100, 100], [0, 5]])
def test_sampled_subgraph_is_valid(fanout):
    data = random_graph()
    sampler = HeteroNeighborSampler(data)
    seeds = {"a": torch.tensor([3, 17, 0, 42]), "b": torch.tensor([0, 9])}
    sub = sampler.sample(seeds, fanout, torch.Generator().manual_seed(0))
    assert set(sub.node_types) == set(data.node_types) and set(sub.edge_types) == set(data.edge_types)
    for t in data.node_types:
        n_id = sub[t].n_id
        assert n_id.unique().numel() == n_id.numel() == sub[t].num_nodes  # each node once
        if t in seeds:  # seeds first, in the requested order
            assert sub[t].batch_size == seeds[t].numel() and torch.equal(n_id[: seeds[t].numel()], seeds[t])
        else:
            assert "batch_size" not in sub[t]
    assert torch.equal(sub["a"].x, data["a"].x[sub["a"].n_id])
    assert sub["c"].num_nodes == 0
    for et in data.edge_types:
        src_t, _, dst_t = et
        ei, e_id = sub[et].edge_index, sub[et].e_id
        original = data[et].edge_index[:, e_id]
        # every sampled edge exists in the original graph (relabelled correctly), none twice
        assert torch.equal(torch.stack([sub[src_t].n_id[ei[0]], sub[dst_t].n_id[ei[1]]]), original)
        assert e_id.unique().numel() == e_id.numel()
        if "edge_weight" in data[et]:
            assert torch.equal(sub[et].edge_weight, data[et].edge_weight[e_id])
        # fanout per destination node: exactly min(in-degree, fanout) for the seeds (hop 0),
        # at most the largest fanout for every other node
        deg_full = torch.bincount(data[et].edge_index[1], minlength=data[dst_t].num_nodes)
        deg_sub = torch.bincount(ei[1], minlength=sub[dst_t].num_nodes)
        assert deg_sub.numel() == 0 or int(deg_sub.max()) <= max(fanout)
        if dst_t in seeds:
            n = seeds[dst_t].numel()
            assert torch.equal(deg_sub[:n], deg_full[seeds[dst_t]].clamp(max=fanout[0]))


def test_sampler_is_deterministic_given_a_generator():
    data = random_graph()
    sampler = HeteroNeighborSampler(data)
    seeds = {"a": torch.arange(0, 80, 7)}
    one = sampler.sample(seeds, [4, 3], torch.Generator().manual_seed(5))
    two = sampler.sample(seeds, [4, 3], torch.Generator().manual_seed(5))
    other = sampler.sample(seeds, [4, 3], torch.Generator().manual_seed(6))
    for et in data.edge_types:
        assert torch.equal(one[et].e_id, two[et].e_id)
    for t in data.node_types:
        assert torch.equal(one[t].n_id, two[t].n_id)
    assert any(not torch.equal(one[et].e_id, other[et].e_id) for et in data.edge_types)


def test_fanout_minus_one_is_the_full_neighbourhood():
    data = random_graph()
    seeds = {"a": torch.tensor([5, 1, 33])}
    sub = HeteroNeighborSampler(data).sample(seeds, [-1, -1])
    # hop 0: every in-edge of the seeds; hop 1: every in-edge of the nodes first reached at hop 0
    hop1 = {"a": set(), "b": set()}
    for et in data.edge_types:
        if et[2] == "a":
            ids = in_edges(data, et, seeds["a"])
            assert ids <= set(sub[et].e_id.tolist())
            hop1[et[0]] = hop1.get(et[0], set()) | set(data[et].edge_index[0, list(ids)].tolist())
    hop1["a"] -= set(seeds["a"].tolist())
    expected = {et: set() for et in data.edge_types}
    for et in data.edge_types:
        if et[2] == "a":
            expected[et] |= in_edges(data, et, seeds["a"])
        reached = torch.tensor(sorted(hop1.get(et[2], set())), dtype=torch.long)
        if reached.numel():
            expected[et] |= in_edges(data, et, reached)
    for et in data.edge_types:
        assert set(sub[et].e_id.tolist()) == expected[et], et


@pytest.mark.parametrize("degree,k", [(5, 2), (9, 8), (100, 70)])  # Floyd path, and the sort path (k > 64)
def test_choose_without_replacement_is_uniform_and_distinct(degree, k):
    g = torch.Generator().manual_seed(0)
    m = 4000
    chosen = choose_without_replacement(torch.full((m,), degree), k, g)
    assert chosen.shape == (m, k) and int(chosen.min()) >= 0 and int(chosen.max()) < degree
    assert bool((chosen.sort(1).values.diff(1) > 0).all())  # distinct within each row
    freq = torch.bincount(chosen.reshape(-1), minlength=degree).double() / m
    assert torch.allclose(freq, torch.full((degree,), k / degree, dtype=torch.double), atol=0.03)


def test_sampler_rejects_bad_seeds():
    sampler = HeteroNeighborSampler(random_graph())
    with pytest.raises(HgimbError, match="repeat"):
        sampler.sample({"a": torch.tensor([1, 1])}, [2])
    with pytest.raises(HgimbError, match="0..79"):
        sampler.sample({"a": torch.tensor([80])}, [2])
    with pytest.raises(HgimbError, match="not in the graph"):
        sampler.sample({"zzz": torch.tensor([0])}, [2])


def test_parse_fanout_and_hops():
    assert parse_fanout("10, 10") == [10, 10] and parse_fanout("-1") == [-1]
    for bad in ("10,x", "", "-2", "10,,5"):
        with pytest.raises(HgimbError, match="--fanout"):
            parse_fanout(bad)
    task = generate(num_movies=60)
    rgcn = build_model("rgcn", task, ModelConfig(hidden=8, layers=2))
    hgn = build_model("simple-hgn", task, ModelConfig(hidden=8, heads=2, layers=2))
    assert declared_hops(rgcn) == 2 and declared_hops(hgn) == 3
    assert declared_hops(build_model("mlp", task, ModelConfig(hidden=8))) == 0
    assert fanout_for(hgn, [5]) == [5, 5, 5] and fanout_for(rgcn, [4, 3]) == [4, 3]
    with pytest.raises(HgimbError, match="passes messages over 3 hop"):
        fanout_for(hgn, [10, 10], "10,10")


def test_backend_choice():
    data = random_graph()
    sampler = make_sampler(data)
    assert sampler.backend == ("pyg" if pyg_sampling_available() else "torch")
    assert make_sampler(data, "torch").backend == "torch"
    if not pyg_sampling_available():
        with pytest.raises(HgimbError, match="pyg-lib or torch-sparse"):
            make_sampler(data, "pyg")


@pytest.mark.skipif(not pyg_sampling_available(), reason="pyg-lib / torch-sparse not installed")
def test_pyg_backend_matches_the_contract():  # pragma: no cover - runs where the extensions exist
    data = random_graph()
    seeds = {"a": torch.tensor([3, 17, 0])}
    sub = make_sampler(data, "pyg").sample(seeds, [-1, -1])
    full = HeteroNeighborSampler(data).sample(seeds, [-1, -1])
    assert torch.equal(sub["a"].n_id[:3], seeds["a"]) and sub["a"].batch_size == 3
    for et in data.edge_types:
        assert set(sub[et].e_id.tolist()) == set(full[et].e_id.tolist())


# ---------------------------------------------------------------------------- models on subgraphs
def mb_config(**changes):
    base = dict(dataset="synthetic", model="rgcn", epochs=3, hidden=16, heads=4, dropout=0.0, batch_size=32,
                fanout="-1", seed=0, quiet=True, plots=False)
    return RunConfig(**{**base, **changes})


@pytest.mark.parametrize("name", ["rgcn", "gat", "simple-hgn", "hgt", "mlp", "metapath2vec"])
def test_full_fanout_minibatch_logits_equal_full_graph(name):
    torch.manual_seed(0)
    task = generate(num_movies=300)
    options = WALK if name == "metapath2vec" else {}
    model = build_model(name, task, ModelConfig(hidden=16, heads=4, dropout=0.0, options=options)).eval()
    batching = NeighborSampling(task, mb_config(model=name, fanout="-1"), torch.device("cpu"))
    items = torch.tensor([7, 3, 250, 11, 3, 99, 7])  # unsorted, with repeats
    with torch.no_grad():
        full = model(task.data)[items]
        assert torch.allclose(batching.logits(model, items), full, atol=1e-5)
        # the training path (encode on a sampled chunk) gives the same rows in eval mode
        assert torch.allclose(model.head(batching.encode(model, items)), full, atol=1e-5)


def test_rgcn_equivalence_with_several_target_types_and_edge_weights():
    """Items spanning two labelled node types map to (type, local id); weighted relations are sliced."""
    torch.manual_seed(0)
    base = generate(num_movies=200)
    data = base.data
    for et in data.edge_types:
        data[et].edge_weight = torch.rand(data[et].edge_index.size(1)) + 0.1
    n_movie, n_actor = int(data["movie"].num_nodes), int(data["actor"].num_nodes)
    y = torch.cat([base.y, torch.randint(0, base.num_classes, (n_actor,))])
    idx = torch.randperm(n_movie + n_actor)
    split = {"train": idx[:300], "val": idx[300:400], "test": idx[400:]}
    task = Task(name="two-types", kind="node", class_names=base.class_names, y=y, split=split, data=data,
                target_types=["movie", "actor"]).validate()
    model = build_model("rgcn", task, ModelConfig(hidden=16, dropout=0.0)).eval()
    batching = NeighborSampling(task, mb_config(fanout="-1,-1", batch_size=8), torch.device("cpu"))
    items = torch.tensor([n_movie + 5, 3, n_movie + 5, 150, n_movie + n_actor - 1, 0])
    with torch.no_grad():
        full = model(data)[items]
        assert torch.allclose(batching.logits(model, items), full, atol=1e-5)
        assert torch.allclose(model.head(batching.encode(model, items)), full, atol=1e-5)
        only_movies = torch.tensor([1, 2])  # a chunk with no seed of the second type
        assert torch.allclose(batching.logits(model, only_movies), model(data)[only_movies], atol=1e-5)


@pytest.mark.parametrize("name", ["rgcn", "gat", "simple-hgn", "hgt", "mlp"])
def test_models_on_subgraphs_with_two_target_types_and_an_empty_type(name):
    """Seeds of one or both labelled types, a relation within a type, hubs, and a node type no
    relation reaches (empty in every subgraph): exact with full fanout, trainable with fanout 2."""
    data = random_graph()
    y = torch.cat([torch.arange(80) % 3, torch.arange(50) % 3])
    idx = torch.randperm(130, generator=torch.Generator().manual_seed(0))
    task = Task(name="random", kind="node", class_names=["x", "y", "z"], y=y, data=data, target_types=["a", "b"],
                split={"train": idx[:60], "val": idx[60:90], "test": idx[90:]}).validate()
    torch.manual_seed(0)
    model = build_model(name, task, ModelConfig(hidden=16, heads=4, dropout=0.0)).eval()
    exact = NeighborSampling(task, mb_config(model=name, fanout="-1"), torch.device("cpu"))
    with torch.no_grad():
        for items in (torch.tensor([3, 1, 3]), torch.tensor([85, 81]), torch.tensor([5, 129, 0])):
            full = model(data)[items]
            assert torch.allclose(exact.logits(model, items), full, atol=1e-5)
            assert torch.allclose(model.head(exact.encode(model, items)), full, atol=1e-5)
    model.train()
    sampled = NeighborSampling(task, mb_config(model=name, fanout="2"), torch.device("cpu"))
    loss = model.head(sampled.encode(model, torch.tensor([85, 81, 2]))).logsumexp(1).sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def symmetric_homogeneous_task(seed=0):
    g = torch.Generator().manual_seed(seed)
    n = 60
    y = torch.arange(n) % 3
    src = torch.randint(0, n, (200,), generator=g)
    dst = (src + 3 * torch.randint(1, 5, (200,), generator=g)) % n  # same class, mostly
    data = HeteroData()
    data["paper"].x = torch.randn(n, 12, generator=g)
    data["paper", "cites", "paper"].edge_index = to_undirected(torch.stack([src, dst]), num_nodes=n)
    split = {"train": torch.arange(0, 30), "val": torch.arange(30, 45), "test": torch.arange(45, 60)}
    return Task(name="tinycora", kind="node", class_names=["a", "b", "c"], y=y, split=split, data=data,
                target_types=["paper"]).validate()


def test_homogeneous_models_in_minibatch_mode():
    task = symmetric_homogeneous_task()
    items = torch.tensor([4, 0, 59, 4])
    for name in ("sage", "gcn"):
        torch.manual_seed(0)
        model = build_model(name, task, ModelConfig(hidden=16, dropout=0.0)).eval()
        batching = NeighborSampling(task, mb_config(model=name, fanout="3,3"), torch.device("cpu"))
        with torch.no_grad():
            sampled = model.head(batching.encode(model, items))
            assert sampled.shape == (4, 3) and torch.isfinite(sampled).all()
            if name == "sage":  # mean aggregation over the in-neighbours: exact with full fanout
                assert torch.allclose(batching.logits(model, items), model(task.data)[items], atol=1e-5)
    # a graph stored one way: the sampler's in-edges are not the neighbours, refused
    one_way = symmetric_homogeneous_task()
    ei = one_way.data["paper", "cites", "paper"].edge_index
    one_way.data["paper", "cites", "paper"].edge_index = ei[:, ei[0] < ei[1]]
    model = build_model("sage", one_way, ModelConfig(hidden=8))
    batching = NeighborSampling(one_way, mb_config(model="sage"), torch.device("cpu"))
    with pytest.raises(HgimbError, match="both edge directions"):
        batching.encode(model, torch.tensor([1, 2]))


def test_han_refuses_minibatches_tam_does_not():
    task = generate(num_movies=120)
    model = build_model("han", task, ModelConfig(hidden=16, heads=4))
    batching = NeighborSampling(task, mb_config(model="han", fanout="5,5"), torch.device("cpu"))
    with pytest.raises(HgimbError, match="model 'han' cannot train on neighbour-sampled mini-batches.*drop --batch-size"):
        batching.encode(model, torch.tensor([1, 2]))
    # tam reads each batch's node ids through the remedy batch hook (tests/test_graph_remedies.py)
    assert NeighborSampling(task, mb_config(remedy="tam"), torch.device("cpu")).batch_size > 0


# ---------------------------------------------------------------------------- training
def test_strategy_is_registered_and_chosen():
    task = generate(num_movies=60)
    assert "neighbor-sampling" in BATCHING
    assert batching_for(task, mb_config(batch_size=16)) == "neighbor-sampling"
    assert batching_for(task, mb_config(batch_size=None)) == "full-graph"
    batching = NeighborSampling(task, mb_config(batch_size=16), torch.device("cpu"))
    chunks = batching.chunks(torch.arange(40))
    assert [c.numel() for c in chunks] == [16, 16, 8] and torch.equal(torch.cat(chunks), torch.arange(40))


def test_encode_keeps_chunk_order_and_repeats_with_sampling():
    torch.manual_seed(0)
    task = generate(num_movies=200)
    model = build_model("rgcn", task, ModelConfig(hidden=16, dropout=0.0)).eval()
    batching = NeighborSampling(task, mb_config(fanout="2,2"), torch.device("cpu"))
    chunk = torch.tensor([9, 4, 9, 120, 4, 4])
    h = batching.encode(model, chunk)
    assert h.shape == (6, model.out_dim)
    assert torch.equal(h[0], h[2]) and torch.equal(h[1], h[4]) and torch.equal(h[1], h[5])
    assert not torch.equal(h[0], h[1])


@pytest.mark.parametrize("remedy", ["none", "balanced-sampler", "smote", "weighted", "mixup+balanced-sampler"])
def test_minibatch_training_runs_with_remedies(remedy):
    task = generate(num_movies=400)
    cfg = mb_config(remedy=remedy, fanout="5,5", batch_size=48, epochs=4, lr=0.01, dropout=0.2)
    trainer = Trainer.from_config(cfg, task)
    assert isinstance(trainer.batching, NeighborSampling)
    outcome = trainer.fit()
    assert outcome.epochs_run == 4
    assert all(np.isfinite(row["train_loss"]) for row in outcome.history)
    assert outcome.logits.shape == (outcome.items.numel(), task.num_classes)
    if remedy == "balanced-sampler":  # the sampler picked the seeds: balanced epochs, with repeats
        idx = trainer.remedy.train_index(0, torch.Generator().manual_seed(0))
        assert idx.unique().numel() < idx.numel()


def test_minibatch_training_learns_like_full_batch():
    task = generate(num_movies=600)
    cfg = dict(epochs=25, patience=25, lr=0.01, dropout=0.2, hidden=32, remedy="weighted")
    mini = Trainer.from_config(mb_config(batch_size=64, fanout="10,10", **cfg), task).fit()
    full = Trainer.from_config(mb_config(batch_size=None, **cfg), task).fit()
    test = task.split["test"]
    def accuracy(outcome):
        rows = torch.isin(outcome.items, test)
        return float((outcome.logits[rows].argmax(1) == task.y[outcome.items[rows]]).float().mean())
    chance = float(torch.bincount(task.y[test]).max()) / test.numel()
    assert accuracy(mini) > chance + 0.1
    assert accuracy(mini) > accuracy(full) - 0.1


def test_minibatch_run_is_reproducible():
    task = generate(num_movies=200)
    one = Trainer.from_config(mb_config(fanout="3,3", epochs=2, dropout=0.3), task).fit()
    two = Trainer.from_config(mb_config(fanout="3,3", epochs=2, dropout=0.3), task).fit()
    assert torch.equal(one.logits, two.logits)


def test_cli_minibatch_end_to_end(tmp_path):
    out = tmp_path / "run"
    # one torch thread: a second one busy-waits on a shared 2-core machine (10x slower)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "hgimb.train", "--dataset", "synthetic", "--batch-size", "64",
                           "--epochs", "3", "--quiet", "--no-plots", "--out", str(out)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3 and 0 <= metrics["test"]["macro_f1"] <= 1
    bad = subprocess.run([sys.executable, "-m", "hgimb.train", "--dataset", "synthetic", "--batch-size", "64",
                          "--fanout", "10,x", "--epochs", "1", "--quiet", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--fanout" in bad.stderr


# ---------------------------------------------------------------------------- scale
def test_sampler_is_vectorised_at_scale():
    """~100k nodes, ~530k edges: a per-node Python loop would need seconds per batch."""
    task = generate(num_movies=26_500, features=False)
    assert 95_000 < sum(int(task.data[t].num_nodes) for t in task.data.node_types) < 105_000
    sampler = HeteroNeighborSampler(task.data).prepare()
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(26_500, generator=g)
    start = time.perf_counter()
    sampled = 0
    batches = torch.split(order, 1024)  # 26 batches: every movie once
    for chunk in batches:
        sub = sampler.sample({"movie": chunk}, [10, 10], g)
        sampled += sum(int(sub[t].num_nodes) for t in sub.node_types)
    elapsed = time.perf_counter() - start
    assert sampled > 26_500 * 5
    assert elapsed < 15.0, f"{len(batches)} batches of 1024 seeds took {elapsed:.1f} s"
