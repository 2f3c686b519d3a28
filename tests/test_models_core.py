"""Core node models (rgcn, gat, mlp) and the shared sparse ops they run on."""
import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData
from torch_geometric.nn import RGCNConv

from hgimb.data.task import Task
from hgimb.errors import HgimbError
from hgimb.models import ModelConfig, build_model
from hgimb.models.registry import model_kinds
from hgimb.models.rgcn import HeteroRGCNConv
from hgimb.models.sparse.cache import GraphCache
from hgimb.models.sparse.csr import FixedAdjacency, edge_norm, spmm, spmm_add
from hgimb.models.sparse.dense import dropout

MODELS = ("rgcn", "gat", "mlp")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny graphs: one intra-op thread. On a loaded machine every op that opens a parallel
    region (embedding_bag, index_add_) waits a scheduler slice for the second thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_graph(seed=0, n_paper=12, n_author=9, n_term=5, num_classes=3):
    """Featured target type 'paper', featureless 'author', featured 'term' with no incoming edges,
    relations author->paper, paper->author and paper->paper; labels planted in features and
    in the authors' groups."""
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    y = torch.arange(n_paper) % num_classes
    data["paper"].x = F.one_hot(y, num_classes).float() + 0.3 * torch.randn(n_paper, num_classes, generator=g)
    data["paper"].x = torch.cat([data["paper"].x, torch.randn(n_paper, 2, generator=g)], 1)
    data["author"].num_nodes = n_author
    data["term"].x = torch.randn(n_term, 4, generator=g)
    # each author belongs to one class group and writes papers of that class
    author_class = torch.arange(n_author) % num_classes
    src, dst = [], []
    for a in range(n_author):
        papers = torch.nonzero(y == author_class[a]).flatten()
        pick = papers[torch.randperm(papers.numel(), generator=g)[:2]]
        src.append(torch.full((pick.numel(),), a))
        dst.append(pick)
    writes = torch.stack([torch.cat(src), torch.cat(dst)])
    data["author", "writes", "paper"].edge_index = writes
    data["paper", "written_by", "author"].edge_index = writes.flip(0)
    data["paper", "cites", "paper"].edge_index = torch.randint(0, n_paper, (2, 20), generator=g)
    data["term", "in", "paper"].edge_index = torch.stack(
        [torch.randint(0, n_term, (10,), generator=g), torch.randint(0, n_paper, (10,), generator=g)]
    )
    return data, y


def tiny_task(featureless_target=False, seed=0):
    data, y = tiny_graph(seed)
    if featureless_target:
        del data["paper"].x
        data["paper"].num_nodes = y.numel()
    n = y.numel()
    split = {"train": torch.arange(0, n, 2), "val": torch.arange(1, n, 4), "test": torch.arange(3, n, 4)}
    return Task(name="tiny", kind="node", class_names=["a", "b", "c"], y=y, split=split, data=data,
                target_types=["paper"]).validate()


def subgraph(data, seeds, target="paper"):
    """The whole graph relabelled so that ``seeds`` come first, as a sampler would return it
    (``n_id`` per type, ``batch_size`` on the target type)."""
    sub = HeteroData()
    relabel = {}
    for t in data.node_types:
        n = int(data[t].num_nodes)
        if t == target:
            rest = torch.tensor([i for i in range(n) if i not in set(seeds.tolist())], dtype=torch.long)
            n_id = torch.cat([seeds, rest])
        else:
            n_id = torch.randperm(n, generator=torch.Generator().manual_seed(1))
        new = torch.empty(n, dtype=torch.long)
        new[n_id] = torch.arange(n)
        relabel[t] = new
        sub[t].n_id = n_id
        sub[t].num_nodes = n
        if getattr(data[t], "x", None) is not None:
            sub[t].x = data[t].x[n_id]
    for et in data.edge_types:
        ei = data[et].edge_index
        sub[et].edge_index = torch.stack([relabel[et[0]][ei[0]], relabel[et[2]][ei[1]]])
    sub[target].batch_size = seeds.numel()
    return sub


# ---------------------------------------------------------------------------- sparse ops
def test_edge_norm_mean_and_sym():
    ei = torch.tensor([[0, 1, 2, 2, 2], [0, 0, 0, 1, 1]])  # the duplicate 2->1 counts twice
    adj = FixedAdjacency.from_edge_index(ei, 3, 2, norm="mean")
    dense = adj.matrix.to_dense()
    assert torch.allclose(dense.sum(1), torch.ones(2))
    assert torch.allclose(dense, torch.tensor([[1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]]))
    assert torch.equal(adj.transpose.to_dense(), dense.t())
    sym = edge_norm(ei, 3, 2, norm="sym")
    deg_in, deg_out = torch.tensor([3.0, 2.0]), torch.tensor([1.0, 1.0, 3.0])
    assert torch.allclose(sym, 1 / torch.sqrt(deg_in[ei[1]] * deg_out[ei[0]]))
    w = torch.tensor([1.0, 3.0, 0.0, 1.0, 1.0])
    assert torch.allclose(edge_norm(ei, 3, 2, w, norm="mean"), torch.tensor([0.25, 0.75, 0.0, 0.5, 0.5]))
    with pytest.raises(ValueError):
        edge_norm(ei, 3, 2, norm="max")


def test_spmm_matches_dense_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    ei = torch.stack([torch.randint(0, 6, (15,), generator=g), torch.randint(0, 4, (15,), generator=g)])
    adj = FixedAdjacency.from_edge_index(ei, 6, 4, dtype=torch.float64)
    x = torch.randn(6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.allclose(spmm(adj, x), adj.matrix.to_dense() @ x)
    assert torch.autograd.gradcheck(lambda v: spmm(adj, v), (x,))
    # a float32 adjacency also serves float64 inputs (cast on the fly)
    adj32 = FixedAdjacency.from_edge_index(ei, 6, 4)
    assert torch.autograd.gradcheck(lambda v: adj32 @ v, (x,))
    base = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.allclose(spmm_add(base, adj, x), base + adj.matrix.to_dense() @ x)
    assert torch.autograd.gradcheck(lambda b, v: spmm_add(b, adj, v), (base, x))
    with pytest.raises(ValueError):
        spmm(adj, torch.randn(5, 3, dtype=torch.float64))


def test_graph_cache_is_keyed_by_identity_and_version():
    cache, calls = GraphCache(maxsize=2), []

    def build(tag):
        calls.append(tag)
        return tag

    a = torch.tensor([[0, 1], [1, 0]])
    assert cache.get([a, None], "k", lambda: build(1)) == 1
    assert cache.get([a, None], "k", lambda: build(2)) == 1  # same object: cached
    assert cache.get([a.clone(), None], "k", lambda: build(3)) == 3  # equal content, new object
    a.add_(0)  # in-place change bumps the version
    assert cache.get([a, None], "k", lambda: build(4)) == 4
    assert cache.get([a, None], "other", lambda: build(5)) == 5  # extra is part of the key
    assert len(cache) <= 2 and calls == [1, 3, 4, 5]
    assert len(copy.deepcopy(cache)) == 0 and len(pickle.loads(pickle.dumps(cache))) == 0


def test_fast_dropout():
    x = torch.ones(200, 500)
    torch.manual_seed(3)
    a = dropout(x, 0.3)
    torch.manual_seed(3)
    b = dropout(x, 0.3)
    assert torch.equal(a, b)
    kept = (a != 0).float().mean().item()
    assert abs(kept - 0.7) < 0.01
    assert abs(a.mean().item() - 1.0) < 0.02  # inverse keep-rate scaling keeps the expectation
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    assert torch.count_nonzero(dropout(x, 1.0)) == 0
    v = torch.randn(50, 8, requires_grad=True)
    out = dropout(v, 0.5)
    out.sum().backward()
    assert torch.equal(v.grad != 0, out != 0)


# ---------------------------------------------------------------------------- RGCN maths
def _global_reference(data, conv, x):
    """PyG RGCNConv on one global node index, with conv's weights (roots set equal)."""
    types = data.node_types
    offsets, start = {}, 0
    for t in types:
        offsets[t] = start
        start += int(data[t].num_nodes)
    ref = RGCNConv(conv.in_dim, conv.out_dim, num_relations=len(conv.edge_types), aggr="mean").double()
    with torch.no_grad():
        ref.weight.copy_(conv.weight)
        ref.root.copy_(conv.root[0])
        ref.bias.copy_(conv.bias[0])
    edge_index = torch.cat(
        [data[et].edge_index + torch.tensor([[offsets[et[0]]], [offsets[et[2]]]]) for et in conv.edge_types], 1
    )
    edge_type = torch.cat([torch.full((data[et].edge_index.size(1),), r) for r, et in enumerate(conv.edge_types)])
    out = ref(torch.cat([x[t] for t in types]), edge_index, edge_type)
    return {t: out[offsets[t]: offsets[t] + int(data[t].num_nodes)] for t in types}


@pytest.mark.parametrize("order", ["auto", "aggregate_first", "transform_first"])
def test_rgcn_conv_equals_pyg_rgcnconv(order, monkeypatch):
    data, _ = tiny_graph()
    torch.manual_seed(0)
    conv = HeteroRGCNConv(data.node_types, data.edge_types, 6, 5).double()
    with torch.no_grad():  # RGCNConv has one root and bias for all nodes
        conv.root.copy_(conv.root[0].expand_as(conv.root))
        conv.bias.uniform_(-1, 1)
        conv.bias.copy_(conv.bias[0].expand_as(conv.bias))
    if order != "auto":
        monkeypatch.setattr(HeteroRGCNConv, "_aggregate_first", lambda self, a, nnz: order == "aggregate_first")
    x = {t: torch.randn(int(data[t].num_nodes), 6, dtype=torch.float64) for t in data.node_types}
    adj = {et: FixedAdjacency.from_edge_index(data[et].edge_index, int(data[et[0]].num_nodes),
                                             int(data[et[2]].num_nodes), dtype=torch.float64)
           for et in data.edge_types}
    out = conv(x, adj, {t: int(data[t].num_nodes) for t in data.node_types})
    ref = _global_reference(data, conv, x)
    for t in data.node_types:
        assert torch.allclose(out[t], ref[t], atol=1e-10), t


def test_rgcn_conv_equals_dense_reference_with_per_type_roots():
    """Independent dense maths: h_t = x_t R_t + b_t + sum_r D_r^-1 A_r x_src W_r."""
    data, _ = tiny_graph()
    torch.manual_seed(1)
    conv = HeteroRGCNConv(data.node_types, data.edge_types, 4, 3).double()
    with torch.no_grad():
        conv.bias.uniform_(-1, 1)
    n = {t: int(data[t].num_nodes) for t in data.node_types}
    x = {t: torch.randn(n[t], 4, dtype=torch.float64) for t in data.node_types}
    adj = {et: FixedAdjacency.from_edge_index(data[et].edge_index, n[et[0]], n[et[2]], dtype=torch.float64)
           for et in data.edge_types}
    out = conv(x, adj, n)
    for i, t in enumerate(data.node_types):
        ref = x[t] @ conv.root[i] + conv.bias[i]
        for r, et in enumerate(data.edge_types):
            if et[2] != t:
                continue
            src, dst = data[et].edge_index
            dense = torch.zeros(n[t], n[et[0]], dtype=torch.float64).index_put_((dst, src), torch.ones(src.numel(), dtype=torch.float64), accumulate=True)
            dense = dense / dense.sum(1, keepdim=True).clamp(min=1)
            ref = ref + dense @ x[et[0]] @ conv.weight[r]
        assert torch.allclose(out[t], ref, atol=1e-10), t


def test_rgcn_conv_gradcheck():
    data, _ = tiny_graph(n_paper=5, n_author=4, n_term=3)
    torch.manual_seed(0)
    conv = HeteroRGCNConv(data.node_types, data.edge_types, 3, 2).double()
    adj = {et: FixedAdjacency.from_edge_index(data[et].edge_index, int(data[et[0]].num_nodes),
                                             int(data[et[2]].num_nodes), dtype=torch.float64)
           for et in data.edge_types}
    rows = {t: int(data[t].num_nodes) for t in data.node_types}
    xs = [torch.randn(rows[t], 3, dtype=torch.float64, requires_grad=True) for t in data.node_types]

    def f(*inputs):
        out = conv(dict(zip(data.node_types, inputs)), adj, rows)
        return tuple(out[t] for t in data.node_types)

    assert torch.autograd.gradcheck(f, tuple(xs))


# ---------------------------------------------------------------------------- the models
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("featureless", [False, True])
def test_shapes_full_graph(name, featureless):
    task = tiny_task(featureless_target=featureless)
    torch.manual_seed(0)
    model = build_model(name, task, ModelConfig(hidden=12, layers=2, heads=4))
    h = model.encode(task.data)
    assert h.shape == (task.num_items, model.out_dim)
    assert model(task.data).shape == (task.num_items, task.num_classes)
    assert torch.isfinite(h).all()


@pytest.mark.parametrize("name", MODELS)
def test_sampled_subgraph_matches_full_graph(name):
    """A subgraph that holds the seeds' whole neighbourhood gives the seeds the same embeddings."""
    task = tiny_task(featureless_target=(name == "mlp"))
    torch.manual_seed(0)
    model = build_model(name, task, ModelConfig(hidden=8, layers=2, heads=2)).eval()
    seeds = torch.tensor([5, 0, 7])
    sub = subgraph(task.data, seeds)
    with torch.no_grad():
        full = model.encode(task.data)
        part = model.encode(sub)
    assert part.shape == (3, model.out_dim)
    assert torch.allclose(part, full[seeds], atol=1e-5)


def chain_graph():
    """a -> b -> c -> target (and target -> a): pruning must keep exactly what each layer reads."""
    g = torch.Generator().manual_seed(0)
    data = HeteroData()
    for t, n in (("a", 6), ("b", 5), ("c", 7), ("target", 8)):
        data[t].num_nodes = n
    data["c"].x = torch.randn(7, 3, generator=g)
    for src, dst in (("a", "b"), ("b", "c"), ("c", "target"), ("target", "a")):
        ns, nd = int(data[src].num_nodes), int(data[dst].num_nodes)
        data[src, "to", dst].edge_index = torch.stack(
            [torch.randint(0, ns, (12,), generator=g), torch.randint(0, nd, (12,), generator=g)])
    y = torch.arange(8) % 2
    return Task(name="chain", kind="node", class_names=["0", "1"], y=y,
                split={"train": torch.arange(4), "val": torch.arange(4, 6), "test": torch.arange(6, 8)},
                data=data, target_types=["target"])


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("name", ["rgcn", "gat"])
def test_type_pruning_matches_unpruned_computation(name, layers):
    task = chain_graph()
    data = task.data
    torch.manual_seed(0)
    model = build_model(name, task, ModelConfig(hidden=6, layers=layers, heads=2)).eval()
    with torch.no_grad():
        x = model.input(data)
        for i in range(layers):
            if name == "rgcn":
                adj = {et: FixedAdjacency.from_edge_index(data[et].edge_index, int(data[et[0]].num_nodes),
                                                         int(data[et[2]].num_nodes)) for et in data.edge_types}
                x = {t: torch.relu(h) for t, h in
                     model.convs[i](x, adj, {t: int(data[t].num_nodes) for t in data.node_types}).items()}
            else:
                msg = model.convs[i](x, data.edge_index_dict)
                x = {t: F.elu(model.skips[i][t](x[t]) + msg.get(t, 0)) for t in data.node_types}
        assert torch.allclose(model.encode(data), x["target"], atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_loss_decreases(name):
    task = tiny_task()
    torch.manual_seed(0)
    model = build_model(name, task, ModelConfig(hidden=16, layers=2, heads=2, dropout=0.1))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    train = task.split["train"]
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.cross_entropy(model(task.data)[train], task.y[train])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_under_manual_seed(name):
    task = tiny_task()
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        model = build_model(name, task, ModelConfig(hidden=8, dropout=0.5)).train()
        outs.append(model(task.data))  # dropout active
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(8)
    other = build_model(name, task, ModelConfig(hidden=8, dropout=0.5)).train()(task.data)
    assert not torch.equal(outs[0], other)


@pytest.mark.parametrize("name", MODELS)
def test_reset_parameters(name):
    task = tiny_task(featureless_target=True)
    torch.manual_seed(0)
    model = build_model(name, task, ModelConfig(hidden=8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(task.data).sum().backward()
        opt.step()
    torch.manual_seed(1)
    model.reset_parameters()
    after = {k: v.clone() for k, v in model.state_dict().items()}
    changed = [k for k in before if before[k].numel() > 1 and not torch.equal(before[k], after[k])]
    assert changed, "reset_parameters changed nothing"
    torch.manual_seed(1)
    model.reset_parameters()
    assert all(torch.equal(after[k], v) for k, v in model.state_dict().items())
    for k, v in after.items():  # embeddings keep their xavier scale, not nn.Embedding's N(0, 1)
        if "embed" in k:
            assert v.std() < 0.5, k


def test_model_cache_follows_the_graph():
    task = tiny_task()
    torch.manual_seed(0)
    model = build_model("rgcn", task, ModelConfig(hidden=8)).eval()
    with torch.no_grad():
        first = model.encode(task.data)
        data2 = task.data.clone()
        data2["author", "writes", "paper"].edge_index = data2["author", "writes", "paper"].edge_index[:, :3]
        second = model.encode(data2)
        again = model.encode(task.data)
    assert not torch.allclose(first, second)
    assert torch.equal(first, again)
    assert "_cache" not in str(list(model.state_dict()))
    clone = copy.deepcopy(model)  # the cache is not copied, the weights are
    with torch.no_grad():
        assert torch.equal(clone.encode(task.data), first)


def test_one_node_type_graph():
    g = torch.Generator().manual_seed(0)
    data = HeteroData()
    y = torch.arange(30) % 2
    data["paper"].x = torch.randn(30, 7, generator=g)
    data["paper", "cites", "paper"].edge_index = torch.randint(0, 30, (2, 80), generator=g)
    task = Task(name="cora-like", kind="node", class_names=["0", "1"], y=y,
                split={"train": torch.arange(10), "val": torch.arange(10, 20), "test": torch.arange(20, 30)},
                data=data, target_types=["paper"])
    for name in MODELS:
        model = build_model(name, task, ModelConfig(hidden=8, heads=2))
        assert model(data).shape == (30, 2)


@pytest.mark.parametrize("name", MODELS)
def test_empty_relation(name):
    task = tiny_task()
    task.data["author", "reviews", "paper"].edge_index = torch.empty(2, 0, dtype=torch.long)
    torch.manual_seed(0)
    options = {"aggr": "sum"} if name == "gat" else {}  # models refuse options they do not declare
    model = build_model(name, task, ModelConfig(hidden=8, heads=2, options=options))
    out = model(task.data)
    assert out.shape == (task.num_items, task.num_classes) and torch.isfinite(out).all()


def test_rgcn_uses_edge_weight_and_option():
    task = tiny_task()
    data = task.data.clone()
    ei = data["author", "writes", "paper"].edge_index
    data["author", "writes", "paper"].edge_weight = torch.rand(ei.size(1), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    weighted = build_model("rgcn", task, ModelConfig(hidden=8)).eval()
    torch.manual_seed(0)
    plain = build_model("rgcn", task, ModelConfig(hidden=8, options={"use_edge_weight": False})).eval()
    with torch.no_grad():
        assert not torch.allclose(weighted.encode(data), plain.encode(data))
        assert torch.allclose(weighted.encode(task.data), plain.encode(data))


def test_registry_and_bad_options():
    task = tiny_task()
    for name in MODELS:
        assert "node" in model_kinds(name)
    with pytest.raises(HgimbError):
        build_model("rgcn", task, ModelConfig(layers=0))
    with pytest.raises(HgimbError, match="aggr"):
        build_model("gat", task, ModelConfig(options={"aggr": "max"}))
    with pytest.raises(HgimbError):
        build_model("mlp", task, ModelConfig(layers=0))
    gat = build_model("gat", task, ModelConfig(hidden=10, heads=4))
    assert gat.out_dim == 12  # heads * ceil(hidden / heads)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", MODELS)
def test_cuda_matches_cpu(name):
    task = tiny_task(featureless_target=True)
    torch.manual_seed(0)
    model = build_model(name, task, ModelConfig(hidden=8, heads=2)).eval()
    with torch.no_grad():
        cpu = model(task.data)
        gpu = model.to("cuda")(task.data.to("cuda"))
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-5)
    model.train()
    model(task.data.to("cuda")).sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
