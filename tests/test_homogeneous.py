"""gcn / sage / gatconv (hgimb/models/homogeneous.py): each layer equals its PyG counterpart
(GCNConv, SAGEConv, GATConv) on a small sparse-feature graph, in both styles, forward and
gradients; the sparse input product equals the dense one; weight-decay scope; option errors."""
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATConv, GCNConv, SAGEConv
from torch_geometric.utils import to_undirected

from hgimb.data.task import Task
from hgimb.errors import HgimbError
from hgimb.models import ModelConfig, build_model
from hgimb.models.homogeneous import SparseFeatures


def sparse_task(n=40, d=80, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, d, generator=g) < 0.05).float() * torch.rand(n, d, generator=g)
    x[0] = 0.0  # a featureless row
    src = torch.randint(0, n, (120,), generator=g)
    dst = torch.randint(0, n, (120,), generator=g)
    ei = torch.stack([src, dst])
    ei = ei[:, ei[0] != ei[1]]
    data = HeteroData()
    data["paper"].x = x
    data["paper"].num_nodes = n
    data["paper", "cites", "paper"].edge_index = to_undirected(ei, num_nodes=n)
    y = torch.randint(0, classes, (n,), generator=g)
    idx = torch.randperm(n, generator=g)
    split = {"train": idx[:20], "val": idx[20:30], "test": idx[30:]}
    return Task(name="tiny", kind="node", class_names=[f"c{i}" for i in range(classes)], y=y, split=split,
                data=data, target_types=["paper"])


def pyg_reference(model, name, style, x, ei):
    """The same network written with PyG convs and the model's weights copied in."""
    w, b = model.weights, model.biases
    convs = []
    for i in range(len(w)):
        if name == "gcn":
            conv = GCNConv(w[i].size(1), w[i].size(0))
            conv.lin.weight.data.copy_(w[i]), conv.bias.data.copy_(b[i])
        elif name == "sage":
            out = w[i].size(0) // 2
            conv = SAGEConv(w[i].size(1), out)
            conv.lin_l.weight.data.copy_(w[i][:out]), conv.lin_r.weight.data.copy_(w[i][out:])
            conv.lin_l.bias.data.copy_(b[i])
        else:
            heads = model.heads
            conv = GATConv(w[i].size(1), w[i].size(0) // heads, heads=heads)
            conv.lin.weight.data.copy_(w[i]), conv.bias.data.copy_(b[i])
            conv.att_src.data.copy_(model.att_src[i]), conv.att_dst.data.copy_(model.att_dst[i])
        convs.append(conv)
    h = x
    for i, conv in enumerate(convs):
        h = conv(h, ei)
        if i < len(convs) - 1 or style == "reference":
            h = F.relu(h)
    if style == "hgimb":
        return model.head(h)
    c = model.head.weight.size(0)
    if name == "gcn":
        out = GCNConv(h.size(1), c)
        out.lin.weight.data.copy_(model.head.weight), out.bias.data.copy_(model.head.bias)
    elif name == "sage":
        out = SAGEConv(h.size(1), c)
        half = model.head.weight.size(1) // 2
        out.lin_l.weight.data.copy_(model.head.weight[:, :half]), out.lin_r.weight.data.copy_(model.head.weight[:, half:])
        out.lin_l.bias.data.copy_(model.head.bias)
    else:
        out = GATConv(h.size(1), c, heads=1, concat=False)
        out.lin.weight.data.copy_(model.head.weight), out.bias.data.copy_(model.head.bias)
        out.att_src.data.copy_(model.out_att_src.view(1, 1, -1)), out.att_dst.data.copy_(model.out_att_dst.view(1, 1, -1))
    return out(h, ei)


@pytest.mark.parametrize("style", ["hgimb", "reference"])
@pytest.mark.parametrize("name", ["gcn", "sage", "gatconv"])
def test_equals_pyg_forward_and_gradients(name, style):
    torch.manual_seed(0)
    task = sparse_task()
    model = build_model(name, task, ModelConfig(hidden=16, layers=2, heads=4, options={"style": style})).eval()
    ei = task.data["paper", "cites", "paper"].edge_index
    x = task.data["paper"].x
    ours = model(task.data)
    theirs = pyg_reference(model, name, style, x, ei)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    # gradients of every weight through the sparse input path equal the dense PyG ones
    ours.pow(2).sum().backward()
    grads = [p.grad.clone() for p in model.weights]
    model.zero_grad()
    for p in model.parameters():
        p.requires_grad_(True)
    w0 = model.weights[0]
    leaf = x.clone().requires_grad_(True)  # requires_grad: the CSR product also gives dL/dx (eval mode)
    task.data["paper"].x = leaf
    model(task.data).pow(2).sum().backward()
    assert torch.allclose(grads[0], w0.grad, atol=1e-4)
    ref_x = x.clone().requires_grad_(True)  # the input gradient equals PyG's dense one
    pyg_reference(model, name, style, ref_x, ei).pow(2).sum().backward()
    assert torch.allclose(leaf.grad, ref_x.grad, atol=1e-4), (leaf.grad - ref_x.grad).abs().max()


@pytest.mark.parametrize("style", ["hgimb", "reference"])
def test_input_gradient_in_training(style):
    """Training: features that require a gradient get it; with input dropout (hgimb) through the
    dense product (dropout masks the gradient at the zeros too), without (reference) through the
    CSR product (equal to PyG's dense gradient: test_equals_pyg_forward_and_gradients)."""
    task = sparse_task()
    x = task.data["paper"].x
    model = build_model("gcn", task, ModelConfig(hidden=16, layers=2, dropout=0.5, options={"style": style}))
    model.train()
    leaf = x.clone().requires_grad_(True)
    task.data["paper"].x = leaf
    torch.manual_seed(1)
    model(task.data).pow(2).sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0
    assert isinstance(model._input(task.data), tuple) == (style == "reference")  # the CSR path


def test_sparse_product_with_masked_values():
    task = sparse_task()
    x = task.data["paper"].x
    feats = SparseFeatures.of(x)
    w = torch.randn(x.size(1), 5, requires_grad=True)
    mask = (torch.rand(feats.values.numel()) > 0.5).float() * 2.0
    out = feats.matmul(w, feats.values * mask)
    dense_x = torch.zeros_like(x)
    rows = torch.repeat_interleave(torch.arange(x.size(0)), feats.indptr.diff())
    dense_x[rows, feats.indices] = feats.values * mask
    ref = dense_x @ w
    assert torch.allclose(out, ref, atol=1e-6)
    g = torch.randn_like(out)
    (d_ours,) = torch.autograd.grad(out, w, g)
    (d_ref,) = torch.autograd.grad(ref, w, g)
    assert torch.allclose(d_ours, d_ref, atol=1e-5)


def test_gcn_target_norm_is_the_graphens_codes_gcn_norm():
    """norm=target: every edge into i (self-loop included) weighs 1 / deg(i), as the GraphENS
    code's gcn_norm (deg_inv_sqrt[col] * w * deg_inv_sqrt[col]); PyG's GCNConv with
    normalize=False on those weights is that layer."""
    from torch_geometric.utils import add_remaining_self_loops, degree

    torch.manual_seed(0)
    task = sparse_task()
    model = build_model("gcn", task, ModelConfig(hidden=16, layers=2, options={"style": "reference", "norm": "target"})).eval()
    x, n = task.data["paper"].x, task.data["paper"].num_nodes
    ei, _ = add_remaining_self_loops(task.data["paper", "cites", "paper"].edge_index, num_nodes=n)
    deg = degree(ei[1], n)
    weight = deg.pow(-0.5)[ei[1]] * deg.pow(-0.5)[ei[1]]  # the GraphENS formula, literally
    h = x
    for w, b, last in [(model.weights[0], model.biases[0], False), (model.head.weight, model.head.bias, True)]:
        conv = GCNConv(w.size(1), w.size(0), normalize=False)
        conv.lin.weight.data.copy_(w), conv.bias.data.copy_(b)
        h = conv(h, ei, weight)
        h = h if last else F.relu(h)
    ours = model(task.data)
    assert torch.allclose(ours, h, atol=1e-5), (ours - h).abs().max()
    sym = build_model("gcn", task, ModelConfig(hidden=16, layers=2, options={"style": "reference"})).eval()
    sym.load_state_dict(model.state_dict())
    assert not torch.allclose(sym(task.data), ours, atol=1e-3)  # the default stays symmetric
    with pytest.raises(HgimbError, match="norm applies to gcn only"):
        build_model("sage", task, ModelConfig(hidden=8, options={"norm": "target"}))


def test_graphens_style_is_the_graphens_codes_gcn():
    """style=graphens + norm=target: GraphENS nets/gcn.py's GCN (conv -> ReLU for every layer,
    dropout, linear classifier; weight decay on the convs only), forward and training-mode
    dropout placement."""
    from torch_geometric.utils import add_remaining_self_loops, degree

    torch.manual_seed(0)
    task = sparse_task()
    model = build_model("gcn", task, ModelConfig(hidden=16, layers=2, dropout=0.5,
                                                 options={"style": "graphens", "norm": "target"})).eval()
    assert len(model.weights) == 2 and model.head.in_features == 16
    assert {id(p) for p in model.no_weight_decay()} == {id(model.head.weight), id(model.head.bias)}
    x, n = task.data["paper"].x, task.data["paper"].num_nodes
    ei, _ = add_remaining_self_loops(task.data["paper", "cites", "paper"].edge_index, num_nodes=n)
    deg = degree(ei[1], n)
    weight = 1.0 / deg[ei[1]]
    h = x
    for w, b in zip(model.weights, model.biases):
        conv = GCNConv(w.size(1), w.size(0), normalize=False)
        conv.lin.weight.data.copy_(w), conv.bias.data.copy_(b)
        h = F.relu(conv(h, ei, weight))
    expected = model.head(h)
    assert torch.allclose(model(task.data), expected, atol=1e-5)
    # training: the only dropout is before the head (the first conv's output is not masked)
    model.train()
    emb = model.encode(task.data)
    zeros = (emb == 0) & (h.detach() != 0)
    assert zeros.any() and torch.allclose(emb[~zeros & (h != 0)], 2 * h[~zeros & (h != 0)], atol=1e-5)
    with pytest.raises(HgimbError, match="layout=graphens ends in a linear head"):
        build_model("gcn", task, ModelConfig(hidden=8, options={"layout": "graphens", "head": "conv"}))


@pytest.mark.parametrize("name", ["gcn", "sage", "gatconv"])
def test_reference_style_decays_the_first_layer_only(name):
    task = sparse_task()
    model = build_model(name, task, ModelConfig(hidden=8, heads=2, options={"style": "reference"}))
    exempt = {id(p) for p in model.no_weight_decay()}
    assert id(model.weights[0]) not in exempt and id(model.biases[0]) not in exempt
    assert id(model.head.weight) in exempt and id(model.head.bias) in exempt
    assert build_model(name, task, ModelConfig(hidden=8, heads=2)).no_weight_decay() == []


def test_option_errors_are_one_line():
    task = sparse_task()
    for options, message in [({"style": "paper"}, "style must be one of hgimb, reference, graphens"),
                             ({"head": "mlp"}, "head must be none or one of linear, conv"),
                             ({"flavour": 1}, "unknown --model-option flavour for model 'gcn'")]:
        with pytest.raises(HgimbError, match=message):
            build_model("gcn", task, ModelConfig(hidden=8, options=options))
    with pytest.raises(HgimbError, match="multiple of --heads"):
        build_model("gatconv", task, ModelConfig(hidden=10, heads=4))
    with pytest.raises(HgimbError, match="needs --layers >= 2"):
        build_model("sage", task, ModelConfig(hidden=8, layers=1, options={"style": "reference"}))


def test_trainer_uses_decay_scope_scheduler_and_acc_f1():
    from hgimb.config import RunConfig
    from hgimb.engine.trainer import Trainer

    task = sparse_task()
    cfg = RunConfig(dataset="tiny", model="gcn", hidden=8, epochs=3, patience=10, scheduler="plateau",
                    monitor="acc_f1", model_options={"style": "reference"})
    trainer = Trainer.from_config(cfg, task)
    decay, exempt = trainer.optimizer.param_groups
    assert decay["weight_decay"] == cfg.weight_decay and exempt["weight_decay"] == 0.0
    assert {id(p) for p in exempt["params"]} == {id(p) for p in trainer.model.no_weight_decay()}
    assert isinstance(trainer.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    outcome = trainer.fit()
    row = outcome.history[0]
    assert row["val_acc_f1"] == pytest.approx((row["val_accuracy"] + row["val_macro_f1"]) / 2)
    plain = Trainer.from_config(RunConfig(dataset="tiny", model="gcn", hidden=8, epochs=1), task)
    assert len(plain.optimizer.param_groups) == 1 and plain.scheduler is None
