"""Simple-HGN against a literal transcription of the HGB reference (THUDM/HGB
NC/benchmark/methods/baseline: ``myGAT`` in GNN.py, ``myGATConv`` in conv.py), written here
with per-edge gathers and ``index_add_`` the way DGL's ``update_all`` computes it: same
parameters, double precision, outputs and gradients must agree with hgimb's fused path."""
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.utils import softmax

from hgimb.errors import HgimbError
from hgimb.models import ModelConfig, build_model
from hgimb.models.simple_hgn import NormalisedLogits, homogeneous_view

from test_models_zoo import NUM_CLASSES, tiny_task


def reference_conv(conv, x, graph, res_attn=None):
    """``myGATConv.forward`` (eval mode: dropout is the identity)."""
    h = conv.lin(x).view(-1, conv.heads, conv.out_channels)
    e_feat = conv.lin_edge(conv.edge_emb(graph.edge_type)).view(-1, conv.heads, conv.edge_dim)
    ee = (e_feat * conv.att_edge).sum(-1)
    el = (h * conv.att_src).sum(-1)
    er = (h * conv.att_dst).sum(-1)
    e = F.leaky_relu(el[graph.src] + er[graph.dst] + ee, conv.negative_slope)
    a = softmax(e, graph.dst, num_nodes=graph.num_nodes)
    if res_attn is not None:
        a = a * (1 - conv.beta) + res_attn * conv.beta
    rst = torch.zeros(graph.num_nodes, conv.heads, conv.out_channels, dtype=x.dtype)
    rst = rst.index_add(0, graph.dst, h[graph.src] * a.unsqueeze(-1))
    if conv.res is not None:
        rst = rst + conv.res(x).view(x.size(0), -1, conv.out_channels)
    if conv.activation:
        rst = F.elu(rst)
    return rst, a.detach()


def reference_forward(model, data):
    """``myGAT.forward``: input projections, ``layers`` multi-head layers with the attention
    residual, the output layer without it, mean over heads, L2 normalisation (the logits)."""
    graph, offsets = homogeneous_view(data, model.edge_types)
    x_dict = model.input(data)
    h = torch.cat([x_dict[t] for t in data.node_types])
    res_attn = None
    for conv in model.convs:
        h, res_attn = reference_conv(conv, h, graph, res_attn)
        h = h.flatten(1)
    logits, _ = reference_conv(model.out_conv, h, graph, None)
    logits = logits.mean(1)
    logits = logits / torch.clamp(logits.norm(dim=1, keepdim=True), min=1e-12)
    rows = torch.cat([torch.arange(offsets[t], offsets[t] + data[t].num_nodes) for t in model.target_types])
    return logits[rows]


@pytest.mark.parametrize("features", [True, False])
def test_simple_hgn_equals_the_hgb_reference(features):
    task = tiny_task(movie_features=features)
    torch.manual_seed(0)
    model = build_model("simple-hgn", task, ModelConfig(hidden=6, heads=3, layers=2)).double().eval()
    for conv in model.convs:  # a visible attention residual
        conv.beta = 0.3
    data = task.data.clone()
    if features:
        data["movie"].x = data["movie"].x.double()
    fast = model(data)
    ref = reference_forward(model, data)
    assert fast.shape == (task.y.numel(), NUM_CLASSES)
    assert torch.allclose(fast, ref, atol=1e-10)
    params = [p for p in model.parameters() if p.requires_grad]
    target = torch.randn_like(fast)
    g_fast = torch.autograd.grad((fast * target).sum(), params)
    g_ref = torch.autograd.grad((ref * target).sum(), params)
    for a, b in zip(g_fast, g_ref):
        assert torch.allclose(a, b, atol=1e-9)


def test_simple_hgn_output_is_hgbs_normalised_logits():
    task = tiny_task()
    model = build_model("simple-hgn", task, ModelConfig(hidden=8, heads=2))
    assert isinstance(model.head, NormalisedLogits)
    assert model.out_conv.out_channels == NUM_CLASSES and model.out_dim == NUM_CLASSES
    assert not model.head.weight.requires_grad and not model.head.bias.requires_grad
    model.reset_parameters()
    assert torch.equal(model.head.weight, torch.eye(NUM_CLASSES)) and not model.head.bias.any()
    logits = model.eval()(task.data)
    norms = logits.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    # the previous layout stays available: a hidden-wide output layer and a trained linear head
    linear = build_model("simple-hgn", task, ModelConfig(hidden=8, heads=2, options={"output": "linear"}))
    assert linear.out_conv.out_channels == 8 and linear.head.weight.requires_grad
    with pytest.raises(HgimbError, match="option output must be one of hgb, linear, got 'bad'"):
        build_model("simple-hgn", task, ModelConfig(hidden=8, heads=2, options={"output": "bad"}))
    with pytest.raises(HgimbError, match="option input_init must be one of hgb, default, got 'bad'"):
        build_model("simple-hgn", task, ModelConfig(hidden=8, heads=2, options={"input_init": "bad"}))


def test_simple_hgn_input_init_follows_hgb():
    task = tiny_task(movie_features=False)
    torch.manual_seed(0)
    hgb = build_model("simple-hgn", task, ModelConfig(hidden=64, heads=1))
    torch.manual_seed(0)
    plain = build_model("simple-hgn", task, ModelConfig(hidden=64, heads=1, options={"input_init": "default"}))
    for t, emb in hgb.input.embed.items():
        n = emb.weight.size(0)
        expected = 1.414 * (2.0 / (n + 64)) ** 0.5  # xavier_normal_ gain 1.414
        assert emb.weight.std().item() == pytest.approx(expected, rel=0.15), t
        assert plain.input.embed[t].weight.std().item() == pytest.approx(expected / 1.414, rel=0.15), t


def test_simple_hgn_dropout_is_seeded_and_active_in_training():
    task = tiny_task()
    torch.manual_seed(0)
    model = build_model("simple-hgn", task, ModelConfig(hidden=8, heads=2, dropout=0.5))
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        outs.append(model.train()(task.data))
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(4)
    assert not torch.equal(model(task.data), outs[0])
    assert torch.equal(model.eval()(task.data), model(task.data))


@pytest.mark.parametrize("training", [True, False])
def test_simple_hgn_encode_rows_computes_only_what_the_rows_read(training):
    """``encode_rows`` (the full-batch trainer's path) equals ``encode(data)[rows]``: values,
    gradients and the dropout draws, for rows in any order with repeats, while its layers compute
    fewer nodes than the graph has."""
    from hgimb.engine.batching import encode_rows

    task = tiny_task(movie_features=False)
    torch.manual_seed(0)
    model = build_model("simple-hgn", task, ModelConfig(hidden=6, heads=3, layers=2, dropout=0.5)).double()
    for conv in model.convs:  # a visible attention residual
        conv.beta = 0.3
    model.train(training)
    rows = torch.tensor([7, 2, 7, 11])
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(5)
    full = model.encode(task.data)[rows]
    g_full = torch.autograd.grad(full.pow(3).sum(), params, allow_unused=True)
    after_full = torch.rand(1)
    torch.manual_seed(5)
    part = encode_rows(model, task.data, rows)
    g_part = torch.autograd.grad(part.pow(3).sum(), params, allow_unused=True)
    assert torch.equal(torch.rand(1), after_full)  # the same random draws were consumed
    assert torch.allclose(part, full, atol=1e-12)
    for a, b in zip(g_part, g_full):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-10)
    graph, offsets = model._view(task.data)
    plan = graph.plan(torch.unique(rows + offsets["movie"]), len(model.convs) + 1)
    assert [s.rows.numel() for s in plan][-1] == 3
    assert plan[0].in_rows.numel() <= graph.num_nodes and plan[1].rows.numel() < graph.num_nodes
    if training:  # dropout is on: another seed gives other values
        torch.manual_seed(6)
        assert not torch.allclose(encode_rows(model, task.data, rows), full)
