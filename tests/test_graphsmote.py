"""GraphSMOTE with its edge generator (hgimb/imbalance/graphsmote.py) and the models'
``encode_extended`` (synthetic nodes inserted before the output convolution), checked against
the paper's equations on small cases."""
import copy

import numpy as np
import pytest
import torch

from hgimb.config import RunConfig
from hgimb.engine.trainer import Trainer
from hgimb.errors import HgimbError
from hgimb.imbalance import BatchContext, build_remedy
from hgimb.imbalance.base import HiddenGraph, HiddenNodes, HiddenRelation
from hgimb.imbalance.graphsmote import EdgeGenerator, SortedEdges, candidate_edges, reconstruction_loss
from hgimb.models import ModelConfig, build_model
from test_bat import CITES, toy_task

REFERENCE = {"style": "reference"}


def test_candidate_edges_are_the_union_of_both_parents_neighbours():
    # 0-1, 0-2, 3-2, 3-4 (both directions)
    pairs = torch.tensor([[0, 1], [0, 2], [3, 2], [3, 4]])
    edges = torch.cat([pairs.t(), pairs.flip(1).t()], 1)
    src, dst = candidate_edges(SortedEdges.of(edges, 5), base=torch.tensor([0, 3, 1]), partner=torch.tensor([3, 0, 1]))
    got = sorted(zip(dst.tolist(), src.tolist()))
    # synthetic 0 and 1: N(0) | N(3) = {1, 2, 4}; synthetic 2 (1 paired with itself): N(1) = {0}
    assert got == [(0, 1), (0, 2), (0, 4), (1, 1), (1, 2), (1, 4), (2, 0)]


def test_sorted_edges_are_reused_only_for_the_same_edges():
    edges = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    graph = SortedEdges.of(edges, 5)
    assert graph.reuse(edges.clone(), 5) is graph  # same content, another tensor (the model's per-step copy)
    assert graph.reuse(edges, 6) is not graph
    other = graph.reuse(torch.tensor([[0, 1, 2, 4], [1, 0, 4, 2]]), 5)
    assert other is not graph and other.keys.tolist() == [1, 5, 14, 22]


def test_generator_probability_and_reconstruction_loss():
    torch.manual_seed(0)
    n, d = 12, 4
    h = torch.rand(n, d)
    gen = EdgeGenerator(d, torch.Generator().manual_seed(0))
    z = h @ gen.weight.detach().t()
    dense = torch.sigmoid(z @ z.t())  # the code's Decoder: sigmoid((H W^T)(H W^T)^T)
    edges = torch.tensor([[0, 1, 2, 3, 5, 7], [1, 0, 3, 2, 7, 5]])
    assert torch.allclose(gen.prob(gen.embed(h[edges[0]]), gen.embed(h[edges[1]])), dense[edges[0], edges[1]])
    adj = torch.zeros(n, n)
    adj[edges[0], edges[1]] = 1
    num_edges = edges.size(1)
    weight = torch.where(adj > 0, torch.ones(()), torch.tensor(num_edges / (n * n - num_edges)))
    exact = float((weight * (dense - adj) ** 2).sum())  # the code's adj_mse_loss
    with torch.no_grad():
        graph = SortedEdges.of(edges, n)
        draws = [float(reconstruction_loss(gen, h, h, graph, torch.Generator().manual_seed(s))) for s in range(4000)]
    assert np.mean(draws) == pytest.approx(exact, rel=0.02)  # the sampled non-edge half is unbiased


@pytest.mark.parametrize("conv", ["gcn", "sage", "gatconv"])
def test_new_nodes_aggregate_as_the_output_convolution(conv):
    task = toy_task()
    torch.manual_seed(0)
    model = build_model(conv, task, ModelConfig(hidden=8, layers=2, options=REFERENCE)).eval()
    data = task.data
    n = data["paper"].num_nodes
    h = torch.randn(n, 8)
    new = HiddenNodes(h=torch.randn(2, 8), edges={"edges": (torch.tensor([3, 5, 9, 3]), torch.tensor([0, 0, 0, 1]))})
    edges = data[CITES].edge_index
    got = model._aggregate_new(h, new, edges)
    if conv in ("sage", "gatconv"):
        # the same as appending the new nodes with directed in-edges and running the output
        # convolution's own aggregation (a new node's row depends on its in-edges only)
        aug = copy.copy(data)
        aug["paper"].num_nodes = n + 2
        src, dst = new.edges["edges"]
        aug[CITES].edge_index = torch.cat([edges, torch.stack([src, dst + n])], 1)
        want = model._last_aggregation(torch.cat([h, new.h]), aug)[n:]
    else:  # GCN: sum_j h_j / sqrt(d_i d_j) over the neighbours and itself, the real degrees
        deg = torch.bincount(model._edges(data, n)[1], minlength=n).float() + 1
        want = torch.stack([
            sum(h[j] / (deg[j] * 4) ** 0.5 for j in (3, 5, 9)) + new.h[0] / 4,
            h[3] / (deg[3] * 2) ** 0.5 + new.h[1] / 2,
        ])
    assert torch.allclose(got, want, atol=1e-5)


def test_encode_extended_keeps_the_real_outputs():
    task = toy_task()
    model = build_model("sage", task, ModelConfig(hidden=8, layers=2, options=REFERENCE)).eval()
    seen = {}

    def hidden(graph):
        h = graph.target
        seen["h"], seen["edges"] = h, graph.relations["edges"].edges
        assert graph.relations["edges"].source is h
        return HiddenNodes(h=h[:2] * 0.5 + h[2:4] * 0.5, edges={"edges": (torch.tensor([7]), torch.tensor([1]))})

    out, new = model.encode_extended(task.data, hidden)
    assert torch.equal(out, model.encode(task.data)) and new.shape == (2, model.head.in_features)
    assert seen["edges"].size(1) == model._edges(task.data, 60).size(1) and seen["h"].size(0) == 60
    lin = build_model("gcn", task, ModelConfig(hidden=8, layers=2))  # style hgimb: a linear head
    with pytest.raises(HgimbError, match="style=reference"):
        lin.encode_extended(task.data, hidden)


def _remedy(task, spec="graphsmote", params=None, model=None):
    from hgimb.imbalance import RemedyContext

    remedy = build_remedy(spec, params)
    remedy.setup(RemedyContext.for_task(task, epochs=5, seed=0))
    remedy.init_model(model or build_model("gcn", task, ModelConfig(hidden=8, layers=2, options=REFERENCE)))
    return remedy


def test_synthetic_rows_are_smote_towards_the_nearest_same_class_node():
    task = toy_task()
    remedy = _remedy(task)
    train = task.split["train"]
    aug = remedy.augment(task.data, BatchContext(train, 0), torch.Generator().manual_seed(1))
    counts = torch.bincount(task.y[train], minlength=3)
    # sampling_strategy auto: every class up to the largest
    assert torch.bincount(aug.new_targets, minlength=3).tolist() == (counts.max() - counts).tolist()
    h = torch.randn(60, 5)
    edges = task.data[CITES].edge_index
    out = aug.hidden(HiddenGraph(h, {"edges": HiddenRelation(h, edges)}))
    assert out.h.shape == (aug.new_targets.numel(), 5)
    # every synthetic row lies on a segment from a training node of its class to that node's
    # nearest other training node of the class
    for k, cls in enumerate(aug.new_targets.tolist()):
        rows = train[task.y[train] == cls].unique()
        dist = torch.cdist(h[rows], h[rows])
        dist.fill_diagonal_(float("inf"))
        ok = False
        for i, v in enumerate(rows.tolist()):
            u = int(rows[dist[i].argmin()])
            step = h[u] - h[v]
            lam = float((out.h[k] - h[v]) @ step / (step @ step))
            ok |= 0 <= lam <= 1 and torch.allclose(h[v] + lam * step, out.h[k], atol=1e-5)
        assert ok
    # kept edges come from the candidates, and the generator took one step
    src, dst = out.edges["edges"]
    assert src.numel() == dst.numel() and (dst < aug.new_targets.numel()).all()
    assert remedy.parts[0].optimizer.state  # Adam has state after its first step


def test_trains_composes_and_is_deterministic():
    def fit(conv, spec, seed=0):
        task = toy_task()
        cfg = RunConfig(dataset="toy", model=conv, epochs=4, patience=4, hidden=8, layers=2, seed=seed, quiet=True)
        torch.manual_seed(seed)
        model = build_model(conv, task, ModelConfig(hidden=8, layers=2, options=REFERENCE))
        return Trainer(task, model, build_remedy(spec, {"tam_warmup": 0} if "tam" in spec else None), cfg).fit()

    for conv in ("gcn", "sage", "gatconv"):
        out = fit(conv, "graphsmote")
        assert np.isfinite([h["train_loss"] for h in out.history]).all()
    for spec in ("graphsmote+balanced-softmax", "graphsmote+tam"):
        assert np.isfinite([h["train_loss"] for h in fit("gcn", spec).history]).all()
    a, b = fit("sage", "graphsmote"), fit("sage", "graphsmote")
    assert torch.equal(a.logits, b.logits)


def test_refusals_are_one_line():
    task = toy_task()
    with pytest.raises(HgimbError, match="style=reference"):
        _remedy(task, model=build_model("gcn", task, ModelConfig(hidden=8, layers=2)))
    hetero = toy_task(hetero=True)
    with pytest.raises(HgimbError, match="cannot"):  # a heterogeneous model without encode_extended
        _remedy(hetero, model=build_model("hgt", hetero, ModelConfig(hidden=8, heads=2)))
    with pytest.raises(HgimbError, match="both decide how the input graph is augmented"):
        build_remedy("graphsmote+bat")
    cfg = RunConfig(dataset="toy", model="gcn", epochs=1, hidden=8, batch_size=4, quiet=True)
    model = build_model("gcn", task, ModelConfig(hidden=8, layers=2, options=REFERENCE))
    with pytest.raises(HgimbError, match="full-graph"):
        Trainer(task, model, build_remedy("graphsmote"), cfg)


# ---------------------------------------------------------------- heterogeneous graphs (rgcn)
def test_candidate_edges_and_reconstruction_loss_of_a_bipartite_relation():
    # author -> paper: 5 authors, 3 papers
    edges = torch.tensor([[0, 1, 1, 4, 2], [0, 0, 1, 1, 2]])
    graph = SortedEdges.of(edges, 3, num_src=5)
    src, dst = candidate_edges(graph, base=torch.tensor([0, 2]), partner=torch.tensor([1, 2]))
    # synthetic 0: authors of paper 0 or 1 = {0, 1, 4}; synthetic 1: authors of paper 2 = {2}
    assert sorted(zip(dst.tolist(), src.tolist())) == [(0, 0), (0, 1), (0, 4), (1, 2)]
    torch.manual_seed(1)
    authors, papers = torch.rand(5, 4), torch.rand(3, 4)
    gen = EdgeGenerator(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        dense = torch.sigmoid(gen.embed(authors) @ gen.embed(papers).t())  # [5, 3]
        adj = torch.zeros(5, 3)
        adj[edges[0], edges[1]] = 1
        weight = torch.where(adj > 0, torch.ones(()), torch.tensor(5 / (15 - 5)))
        exact = float((weight * (dense - adj) ** 2).sum())
        draws = [float(reconstruction_loss(gen, authors, papers, graph, torch.Generator().manual_seed(s)))
                 for s in range(4000)]
    assert np.mean(draws) == pytest.approx(exact, rel=0.02)


def _rgcn(task):
    torch.manual_seed(0)
    return build_model("rgcn", task, ModelConfig(hidden=8, layers=2)).eval()


def test_rgcn_new_nodes_go_through_the_last_convolution():
    from hgimb.models.sparse.csr import FixedAdjacency

    task = toy_task(hetero=True)
    model, data = _rgcn(task), task.data
    new_h = torch.randn(2, 8)
    picked = PICKED
    out, new, graph = _capture(model, data, new_h, picked)
    assert torch.equal(out, model.encode(data))
    # every relation into papers, with its source type's rows
    assert set(graph.relations) == {et for et in data.edge_types if et[2] == "paper"}
    assert graph.relations[CITE].source is graph.target and graph.target.shape == (60, 8)
    assert graph.relations[AUTHOR_PAPER].source.shape == (10, 8)
    # the same as appending the new papers with those in-edges and running the last convolution
    n = 60
    x = {t: r.source for t, r in ((et[0], r) for et, r in graph.relations.items())}
    x["paper"] = torch.cat([graph.target, new_h])
    adj = {}
    for et, relation in graph.relations.items():
        src, dst = picked.get(et, (torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)))
        ei = torch.cat([relation.edges, torch.stack([src, dst + n])], 1)
        adj[et] = FixedAdjacency.from_edge_index(ei, x[et[0]].size(0), n + 2, None, "mean", torch.float32)
    want = torch.relu(model.convs[-1](x, adj, {"paper": n + 2})["paper"][n:])
    assert torch.allclose(new, want, atol=1e-5)


def test_graphsmote_on_a_heterogeneous_graph():
    task = toy_task(hetero=True)
    model = _rgcn(task)
    remedy = _remedy(task, model=model)
    part = remedy.parts[0]
    train = task.split["train"]
    aug = remedy.augment(task.data, BatchContext(train, 0), torch.Generator().manual_seed(1))
    seen = {}

    def hidden(graph):
        seen["graph"] = graph
        seen["out"] = aug.hidden(graph)
        return seen["out"]

    out, new = model.encode_extended(task.data, hidden)
    assert new.shape == (aug.new_targets.numel(), 8)
    graph, nodes = seen["graph"], seen["out"]
    assert set(part.generators) == set(graph.relations)  # one generator per relation into papers
    assert part.optimizer.state  # all stepped
    assert sum(src.numel() for src, _ in nodes.edges.values()) > 0
    for et, (src, dst) in nodes.edges.items():
        # kept edges of a synthetic paper come from its parents' in-neighbours in that relation
        edges = graph.relations[et].edges
        for s_, d_ in zip(src.tolist(), dst.tolist()):
            parents = set()
            # the parents are among the training papers of its class
            cls = int(aug.new_targets[d_])
            for v in train[task.y[train] == cls].tolist():
                parents |= set(edges[0][edges[1] == v].tolist())
            assert s_ in parents


def test_graphsmote_trains_rgcn_and_is_deterministic():
    def fit(spec):
        task = toy_task(hetero=True)
        cfg = RunConfig(dataset="toy", model="rgcn", epochs=4, patience=4, hidden=8, layers=2, seed=0, quiet=True)
        torch.manual_seed(0)
        model = build_model("rgcn", task, ModelConfig(hidden=8, layers=2))
        return Trainer(task, model, build_remedy(spec, {"tam_warmup": 0} if "tam" in spec else None), cfg).fit()

    for spec in ("graphsmote", "graphsmote+balanced-softmax", "graphsmote+tam"):
        assert np.isfinite([h["train_loss"] for h in fit(spec).history]).all()
    a, b = fit("graphsmote"), fit("graphsmote")
    assert torch.equal(a.logits, b.logits)


def _capture(model, data, new_h, picked):
    seen = {}

    def hidden(graph):
        seen["graph"] = graph
        return HiddenNodes(h=new_h, edges=picked)

    out, new = model.encode_extended(data, hidden)
    return out, new, seen["graph"]


AUTHOR_PAPER = ("author", "to_paper", "paper")
CITE = ("paper", "cite", "paper")
PICKED = {AUTHOR_PAPER: (torch.tensor([3, 7, 3]), torch.tensor([0, 0, 1])), CITE: (torch.tensor([5]), torch.tensor([1]))}


def test_gat_new_nodes_go_through_the_last_layer():
    from torch_geometric.nn.conv.hetero_conv import group

    task = toy_task(hetero=True)
    torch.manual_seed(0)
    model = build_model("gat", task, ModelConfig(hidden=8, layers=2, heads=2)).eval()
    new_h = torch.randn(2, 8)
    out, new, graph = _capture(model, task.data, new_h, PICKED)
    assert torch.equal(out, model.encode(task.data))
    assert set(graph.relations) == {et for et in task.data.edge_types if et[2] == "paper"}
    # PyG's own GATConv / HeteroConv on the graph with the new papers appended (their in-edges only)
    n, conv = 60, model.convs[-1]
    x = {et[0]: r.source for et, r in graph.relations.items()}
    x["paper"] = torch.cat([graph.target, new_h])
    messages = []
    for et, relation in graph.relations.items():
        src, dst = PICKED.get(et, (torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)))
        edges = torch.cat([relation.edges, torch.stack([src, dst + n])], 1)
        source = x["paper"] if et[0] == "paper" else x[et[0]]
        messages.append(conv.convs[et]((source, x["paper"]) if et[0] != "paper" else source, edges))
    want = torch.nn.functional.elu(model.skips[-1]["paper"](x["paper"]) + group(messages, conv.aggr))[n:]
    assert torch.allclose(new, want, atol=1e-5)


def test_simple_hgn_new_nodes_go_through_the_output_layer():
    from hgimb.models.simple_hgn import AttentionGraph

    task = toy_task(hetero=True)
    torch.manual_seed(0)
    model = build_model("simple-hgn", task, ModelConfig(hidden=8, layers=2, heads=2)).eval()
    new_h = torch.randn(2, 16)  # the output layer reads heads x hidden
    out, new, graph = _capture(model, task.data, new_h, PICKED)
    assert torch.allclose(out, model.encode(task.data))
    assert set(graph.relations) == {et for et in task.data.edge_types if et[2] == "paper"}
    # the output layer's own forward on the homogeneous view with the new papers appended: their
    # in-edges typed by relation, and a self-loop each
    view, offsets = model._view(task.data)
    total = view.num_nodes
    h = torch.zeros(total, 16)
    for t in task.data.node_types:
        rows = graph.target if t == "paper" else next(r.source for et, r in graph.relations.items() if et[0] == t)
        h[offsets[t]: offsets[t] + rows.size(0)] = rows
    types = {et: i for i, et in enumerate(model.edge_types)}
    src = [view.edge_index[0]] + [PICKED[et][0] + offsets[et[0]] for et in PICKED] + [torch.arange(2) + total]
    dst = [view.edge_index[1]] + [PICKED[et][1] + total for et in PICKED] + [torch.arange(2) + total]
    kind = [view.edge_type] + [torch.full((PICKED[et][0].numel(),), types[et]) for et in PICKED] + \
        [torch.full((2,), len(model.edge_types))]
    bigger = AttentionGraph(torch.stack([torch.cat(src), torch.cat(dst)]), torch.cat(kind), total + 2)
    full, _ = model.out_conv(torch.cat([h, new_h]), bigger)
    want = torch.nn.functional.normalize(full[total:].mean(1), p=2, dim=-1)
    assert torch.allclose(new, want, atol=1e-5)


def test_a_target_type_without_incoming_relations_gets_edgeless_synthetic_nodes():
    from torch_geometric.data import HeteroData

    task = toy_task(hetero=True)
    data = HeteroData()
    data["paper"].x, data["paper"].num_nodes = task.data["paper"].x, 60
    data["author"].num_nodes = 10
    data["paper", "to_author", "author"].edge_index = task.data["paper", "to_author", "author"].edge_index
    task.data = data
    model = _rgcn(task)
    remedy = _remedy(task, model=model)
    aug = remedy.augment(data, BatchContext(task.split["train"], 0), torch.Generator().manual_seed(1))
    out, new = model.encode_extended(data, aug.hidden)
    assert new.shape == (aug.new_targets.numel(), 8) and torch.isfinite(new).all()
    assert remedy.parts[0].optimizer is None  # no relation into papers: no edge generator to train
