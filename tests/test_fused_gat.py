"""Fused attention kernels: the multi-head CSR product (sparse.head_spmm), the fused
HeteroConv(GATConv) forward (fused_gat.hetero_gat) and Simple-HGN's output-row restriction, each
against the reference computation, values and gradients."""
import warnings

import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATConv, HeteroConv

from hgimb.data.synthetic import generate
from hgimb.models import ModelConfig, build_model
from hgimb.models import gat as gat_module
from hgimb.models.fused_gat import RelationGraph, hetero_gat
from hgimb.models.simple_hgn import AttentionGraph, SimpleHGNConv, homogeneous_view
from hgimb.models.sparse.attention import HeadCSR, head_spmm
from hgimb.models.sparse.cache import GraphCache
from hgimb.models.sparse.dense import first_rows


def reference_product(alpha, x, src, dst, num_dst, base=None):
    out = torch.zeros(num_dst, x.size(1), x.size(2), dtype=x.dtype).index_add_(0, dst, x[src] * alpha.unsqueeze(-1))
    return out if base is None else out + base


def sorted_edges(num_src, num_dst, num_edges, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_src, (num_edges,), generator=g)
    dst = torch.randint(0, num_dst - 1, (num_edges,), generator=g)  # the last row gets no edge
    dst, order = torch.sort(dst, stable=True)
    return src[order], dst


@pytest.mark.parametrize("base_shape", [None, "full", "broadcast"])
def test_head_spmm_matches_gather_scatter_with_gradients(base_shape):
    g = torch.Generator().manual_seed(1)
    n_src, n_dst, heads, width = 7, 5, 3, 4
    src, dst = sorted_edges(n_src, n_dst, 23)
    graph = HeadCSR(src, dst, n_src, n_dst, heads)
    alpha = torch.rand(23, heads, dtype=torch.double, generator=g, requires_grad=True)
    x = torch.randn(n_src, heads, width, dtype=torch.double, generator=g, requires_grad=True)
    base = None
    if base_shape is not None:
        shape = (n_dst, heads, width) if base_shape == "full" else (n_dst, 1, width)
        base = torch.randn(*shape, dtype=torch.double, generator=g, requires_grad=True)
    out = head_spmm(alpha, x, graph, base)
    ref = reference_product(alpha, x, src, dst, n_dst, base)
    assert out.shape == (n_dst, heads, width)
    assert torch.allclose(out, ref)
    assert torch.equal(out[-1] if base is None else out[-1] - base[-1], torch.zeros(heads, width, dtype=torch.double))
    inputs = (alpha, x) if base is None else (alpha, x, base)
    upstream = torch.randn_like(out)
    got = torch.autograd.grad(out, inputs, upstream)
    want = torch.autograd.grad(ref, inputs, upstream)
    for a, b in zip(got, want):
        assert torch.allclose(a, b)
    assert torch.autograd.gradcheck(lambda *t: head_spmm(t[0], t[1], graph, t[2] if len(t) > 2 else None), inputs)


def test_head_spmm_edge_cases():
    x = torch.randn(4, 2, 3, requires_grad=True)
    empty = HeadCSR(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), 4, 3, 2)
    alpha = torch.empty(0, 2, requires_grad=True)
    out = head_spmm(alpha, x, empty)
    assert torch.equal(out, torch.zeros(3, 2, 3))
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    with pytest.raises(ValueError, match="sorted by destination"):
        HeadCSR(torch.tensor([0, 1]), torch.tensor([2, 0]), 4, 3, 2)
    graph = HeadCSR(torch.tensor([0, 1]), torch.tensor([0, 2]), 4, 3, 2)
    with pytest.raises(ValueError, match="alpha has shape"):
        head_spmm(torch.rand(2, 3), x, graph)
    with pytest.raises(ValueError, match="base has shape"):
        head_spmm(torch.rand(2, 2), x, graph, torch.zeros(4, 2, 3))
    y = torch.randn(5, 2)
    assert first_rows(y, 5) is y and torch.equal(first_rows(y, 2), y[:2])


# ---------------------------------------------------------------------------- fused HeteroConv(GATConv)
def two_type_graph(seed=0):
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data["a"].num_nodes, data["b"].num_nodes = 30, 12
    data["a", "to", "b"].edge_index = torch.stack([torch.randint(0, 30, (70,), generator=g), torch.randint(0, 12, (70,), generator=g)])
    data["b", "back", "a"].edge_index = data["a", "to", "b"].edge_index.flip(0)
    data["a", "near", "a"].edge_index = torch.randint(0, 30, (2, 50), generator=g)
    data["b", "none", "a"].edge_index = torch.empty(2, 0, dtype=torch.long)  # an empty relation
    return data


def hetero_conv(data, width=8, heads=2, dropout=0.0, aggr="sum", **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HeteroConv({et: GATConv(width if et[0] == et[2] else (width, width), width // heads, heads=heads,
                                       dropout=dropout, add_self_loops=False, **extra)
                           for et in data.edge_types}, aggr=aggr)


@pytest.mark.parametrize("aggr", ["sum", "mean"])
def test_hetero_gat_matches_heteroconv_eval_and_gradients(aggr):
    data = two_type_graph()
    torch.manual_seed(0)
    conv = hetero_conv(data, aggr=aggr).eval()
    x = {"a": torch.randn(30, 8, requires_grad=True), "b": torch.randn(12, 8, requires_grad=True)}
    ref = conv(x, data.edge_index_dict)
    out = hetero_gat(conv, x, data.edge_index_dict, cache=GraphCache(16))
    assert out.keys() == ref.keys()
    for t in ref:
        assert torch.allclose(out[t], ref[t], atol=1e-6)
    upstream = {t: torch.randn_like(ref[t]) for t in ref}
    params = [p for p in conv.parameters()] + [x["a"], x["b"]]
    want = torch.autograd.grad([ref[t] for t in ref], params, [upstream[t] for t in ref], allow_unused=True)
    got = torch.autograd.grad([out[t] for t in ref], params, [upstream[t] for t in ref], allow_unused=True)
    for a, b in zip(got, want):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-5)


def test_hetero_gat_training_draws_the_same_dropout_masks_and_restricts_rows():
    data = two_type_graph(1)
    torch.manual_seed(0)
    conv = hetero_conv(data, dropout=0.5).train()
    x = {"a": torch.randn(30, 8), "b": torch.randn(12, 8)}
    torch.manual_seed(5)
    ref = conv(x, data.edge_index_dict)
    torch.manual_seed(5)
    out = hetero_gat(conv, x, data.edge_index_dict)
    for t in ref:
        assert torch.allclose(out[t], ref[t], atol=1e-6)
    # the first rows only (a last layer's targets): edges into those rows, outputs of those rows
    rows = {"a": 10, "b": 12}
    edges = {et: ei[:, ei[1] < rows[et[2]]] for et, ei in data.edge_index_dict.items()}
    conv.eval()
    part = hetero_gat(conv, x, edges, rows)
    full = conv(x, data.edge_index_dict)
    assert part["a"].shape == (10, 8) and torch.allclose(part["a"], full["a"][:10], atol=1e-6)
    with pytest.raises(ValueError, match="beyond"):
        hetero_gat(conv, x, data.edge_index_dict, rows)


def test_hetero_gat_caches_relations_and_falls_back_for_other_convs():
    data = two_type_graph(2)
    torch.manual_seed(0)
    conv = hetero_conv(data).eval()
    x = {"a": torch.randn(30, 8), "b": torch.randn(12, 8)}
    cache = GraphCache(16)
    first = hetero_gat(conv, x, data.edge_index_dict, cache=cache)
    assert len(cache) == len(data.edge_types)
    again = hetero_gat(conv, x, data.edge_index_dict, cache=cache)
    assert len(cache) == len(data.edge_types) and all(torch.equal(first[t], again[t]) for t in first)
    graph = RelationGraph(data["a", "to", "b"].edge_index, 30, 12, 2)
    assert graph.perm is not None and bool((graph.dst[1:] >= graph.dst[:-1]).all())
    # GATConv options the fused path does not cover: HeteroConv itself runs
    torch.manual_seed(0)
    residual = hetero_conv(data, residual=True).eval()
    ref = residual(x, data.edge_index_dict)
    out = hetero_gat(residual, x, data.edge_index_dict)
    assert all(torch.equal(out[t], ref[t]) for t in ref)


def test_gat_model_equals_the_heteroconv_path_in_training():
    """hgimb's gat with the fused forward against the same model calling HeteroConv itself."""
    task = generate(num_movies=150)
    torch.manual_seed(0)
    model = build_model("gat", task, ModelConfig(hidden=16, heads=4, dropout=0.3)).train()

    def plain(conv, x, edges, rows, cache):
        return {t: h[: rows[t]] for t, h in conv(x, edges).items() if t in rows}

    outs, grads = [], []
    for fused in (True, False):
        model.zero_grad()
        original = gat_module.hetero_gat
        if not fused:
            gat_module.hetero_gat = plain
        try:
            torch.manual_seed(3)
            out = model(task.data)
        finally:
            gat_module.hetero_gat = original
        out.pow(2).sum().backward()
        outs.append(out.detach())
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], atol=1e-5, rtol=1e-4), k


# ---------------------------------------------------------------------------- Simple-HGN rows
def test_simple_hgn_output_rows_equal_the_full_layer():
    task = generate(num_movies=80)
    graph, offsets = homogeneous_view(task.data, list(task.data.edge_types))
    torch.manual_seed(0)
    conv = SimpleHGNConv(12, 6, heads=1, num_edge_types=len(task.data.edge_types) + 1, edge_dim=4,
                         dropout=0.0, attn_dropout=0.0, residual=True, activation=False).eval()
    conv.res = torch.nn.Linear(12, 6, bias=False)
    x = torch.randn(graph.num_nodes, 12, requires_grad=True)
    full, alpha_full = conv(x, graph)
    ranges = ((offsets["actor"], offsets["actor"] + 5), (0, 7))  # out of node order on purpose
    part, alpha_part = conv(x, graph, rows=ranges)
    rows = torch.cat([torch.arange(a, b) for a, b in ranges])
    assert torch.allclose(part, full[rows], atol=1e-6) and torch.equal(alpha_part, alpha_full)
    g_part = torch.autograd.grad(part.sum(), x)[0]
    g_full = torch.autograd.grad(full[rows].sum(), x)[0]
    assert torch.allclose(g_part, g_full, atol=1e-5)
    edges, product, row_ids = graph.into(ranges, 1)
    assert torch.equal(row_ids, rows) and product.num_dst == rows.numel()
    assert graph.into(ranges, 1)[1] is product  # cached per (rows, heads)


def test_attention_graph_products_are_cached_per_head_count():
    graph = AttentionGraph(torch.tensor([[0, 1, 2, 2], [1, 2, 0, 1]]), torch.zeros(4, dtype=torch.long), 3)
    assert graph.head_csr(2) is graph.head_csr(2) and graph.head_csr(1) is not graph.head_csr(2)
