"""Sparse embedding training (hgimb/engine/optim.py): LazyAdam against torch's Adam, row-sparse
gradients from HeteroInput on sampled subgraphs, the auto/on/off choice and the trainer."""
import pytest
import torch
import torch.nn.functional as F

from hgimb.config import RunConfig
from hgimb.engine import load_task
from hgimb.engine import optim
from hgimb.engine.trainer import Trainer
from hgimb.errors import HgimbError
from hgimb.models import HeteroInput


def _adam_pair(weight_decay):
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(7, 3))
    b = torch.nn.Parameter(a.detach().clone())
    ref = torch.optim.Adam([a], lr=0.05, weight_decay=weight_decay)
    lazy = optim.LazyAdam([b], lr=0.05, weight_decay=weight_decay)
    return a, b, ref, lazy


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_lazy_adam_equals_adam_on_dense_gradients_and_on_sparse_ones_touching_every_row(weight_decay):
    for sparse in (False, True):
        a, b, ref, lazy = _adam_pair(weight_decay)
        for step in range(5):
            grad = torch.randn(7, 3, generator=torch.Generator().manual_seed(step))
            a.grad = grad.clone()
            b.grad = grad.to_sparse(1) if sparse else grad.clone()
            ref.step()
            lazy.step()
            assert torch.allclose(a, b, atol=1e-6), (sparse, step)


def test_lazy_adam_leaves_untouched_rows_and_their_moments_alone():
    a, b, ref, lazy = _adam_pair(0.01)
    rows = torch.tensor([1, 4, 4])  # a repeated row: its gradients add up
    values = torch.ones(3, 3)
    b.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, (7, 3))
    before = b.detach().clone()
    lazy.step()
    untouched = torch.tensor([0, 2, 3, 5, 6])
    assert torch.equal(b[untouched], before[untouched])
    assert not lazy.state[b]["exp_avg"][untouched].any() and not lazy.state[b]["exp_avg_sq"][untouched].any()
    assert torch.allclose(lazy.state[b]["exp_avg"][4], torch.full((3,), 0.1 * 2) + 0.1 * 0.01 * before[4])
    assert (b[torch.tensor([1, 4])] < before[torch.tensor([1, 4])]).all()


def test_hetero_input_gives_row_sparse_gradients_on_sampled_subgraphs():
    cfg = RunConfig(dataset="synthetic", dataset_options={"num_movies": 100})
    task = load_task(cfg)
    inp = HeteroInput(task.data, 8)
    featureless = next(iter(inp.embed))
    data = task.data.clone()
    data[featureless].n_id = torch.tensor([5, 2, 9])
    for sparse in (False, True):
        inp.sparse_embeddings = sparse
        inp.zero_grad(set_to_none=True)
        out = inp(data)[featureless]
        (out * torch.arange(8.0)).sum().backward()
        grad = inp.embed[featureless].weight.grad
        assert grad.is_sparse == sparse
        dense = grad.to_dense() if sparse else grad
        assert torch.equal(dense.abs().sum(1).nonzero().flatten(), torch.tensor([2, 5, 9]))


def test_auto_goes_sparse_for_big_tables_in_minibatch_runs_only(monkeypatch):
    cfg = RunConfig(dataset="synthetic", dataset_options={"num_movies": 100})
    task = load_task(cfg)
    from hgimb.models import ModelConfig, build_model

    model = build_model("rgcn", task, ModelConfig(hidden=8))
    rows = optim.embedding_rows(model)
    assert rows > 0
    assert not optim.choose_sparse("auto", model, minibatch=True)  # small tables
    assert optim.choose_sparse("on", model, minibatch=False) and not optim.choose_sparse("off", model, minibatch=True)
    monkeypatch.setattr(optim, "AUTO_MIN_ROWS", rows)
    assert optim.choose_sparse("auto", model, minibatch=True) and not optim.choose_sparse("auto", model, minibatch=False)
    big = RunConfig(sparse_embeddings="auto", batch_size=32)
    assert optim.configure_sparse(big, model, minibatch=True)
    assert not optim.configure_sparse(big.replace(optimizer="sgd"), model, minibatch=True)  # auto keeps SGD
    assert not any(m.sparse_embeddings for m in optim.embedding_inputs(model))
    with pytest.raises(HgimbError, match="--sparse-embeddings must be auto, on or off, got 'yes'"):
        RunConfig(sparse_embeddings="yes").validate()


@pytest.mark.parametrize("model", ["rgcn", "gat"])
def test_trainer_trains_sampled_runs_with_sparse_tables(model):
    base = RunConfig(dataset="synthetic", dataset_options={"num_movies": 200}, model=model, epochs=3, hidden=8,
                     batch_size=32, lr=0.01, patience=10, quiet=True)
    trainer = Trainer.from_config(base.replace(sparse_embeddings="on"), load_task(base))
    assert isinstance(trainer.optimizer, optim.LazyAdam)
    tables = [emb.weight for m in optim.embedding_inputs(trainer.model) for emb in m.embed.values()]
    before = [t.detach().clone() for t in tables]
    trainer.train_epoch(0)
    assert all(t.grad is None or t.grad.is_sparse for t in tables)
    assert any(not torch.equal(t, b) for t, b in zip(tables, before))
    dense = Trainer.from_config(base.replace(sparse_embeddings="off"), load_task(base))
    assert isinstance(dense.optimizer, torch.optim.Adam)
    with pytest.raises(HgimbError, match="--optimizer sgd has no sparse form"):
        Trainer.from_config(base.replace(sparse_embeddings="on", optimizer="sgd"), load_task(base))
