"""HeteroInput projects sparse wide features through a CSR product: same values and gradients."""
import torch
from torch_geometric.data import HeteroData

from hgimb.models.base import HeteroInput, sparse_rows


def _data(density: float, cols: int = 300):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(400, cols, generator=gen) < density).float() * torch.rand(400, cols, generator=gen)
    data = HeteroData()
    data["paper"].x = x
    data["term"].num_nodes = 9
    return data


def _forward_backward(module, data):
    module.zero_grad()
    out = module(data)["paper"]
    (out.square().sum() + out.sum()).backward()
    lin = module.proj["paper"]
    return out.detach(), lin.weight.grad.clone(), lin.bias.grad.clone()


def test_sparse_projection_matches_dense_linear():
    data = _data(0.05)
    module = HeteroInput(data, 16)
    assert sparse_rows(data["paper"].x) is not None
    out, grad_w, grad_b = _forward_backward(module, data)
    module.zero_grad()
    ref = module.proj["paper"](data["paper"].x)
    (ref.square().sum() + ref.sum()).backward()
    torch.testing.assert_close(out, ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_w, module.proj["paper"].weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad_b, module.proj["paper"].bias.grad, rtol=1e-4, atol=1e-5)


def test_dense_or_narrow_features_keep_the_dense_path():
    assert sparse_rows(_data(0.6)["paper"].x) is None
    assert sparse_rows(_data(0.05, cols=8)["paper"].x) is None


def test_csr_is_cached_per_feature_tensor_and_rebuilt_for_a_new_one():
    data = _data(0.05)
    module = HeteroInput(data, 8)
    module(data)
    module(data)
    assert len(module._sparse._entries) == 1
    data["paper"].x = data["paper"].x[:100].clone()  # e.g. a sampled subgraph's rows
    out = module(data)["paper"]
    assert out.shape == (100, 8)
    torch.testing.assert_close(out, module.proj["paper"](data["paper"].x), rtol=1e-5, atol=1e-5)
