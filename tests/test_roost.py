"""Roost (hgimb/models/roost.py): the stoichiometry graph and the model against the paper's
equations computed crystal by crystal, on the real CGCNN sample set."""
import numpy as np
import pytest
import torch

from hgimb.config import RunConfig
from hgimb.data.splits import make_split
from hgimb.engine.run import train_task
from hgimb.errors import HgimbError
from hgimb.features.store import attach_global
from hgimb.models import ModelConfig, build_model
from hgimb.models.roost import Roost, composition_graph, matscholar_table
from test_crystal import _batch, sample_task  # noqa: F401  (sample_task: the real CGCNN sample set)

SMALL = {"gate_hidden": "16", "msg_hidden": "16", "trunk_hidden": "32,24", "out_hidden": "16,8"}


def _model(task, **options):
    torch.manual_seed(0)
    return build_model("roost", task, ModelConfig(hidden=12, layers=2, heads=2, dropout=0.0,
                                                  options={**SMALL, **options}))


def test_composition_graph_counts_elements_and_pairs_every_two_of_a_crystal():
    # crystal 0: O3 Fe2 (atoms unsorted), crystal 1: Li, crystal 2: H2 C
    z = torch.tensor([8, 26, 26, 8, 8, 3, 1, 1, 6])
    index = torch.tensor([0, 0, 0, 0, 0, 1, 2, 2, 2])
    element_of_atom, zs, crystal, fraction, self_idx, nbr_idx = composition_graph(z, index, 3)
    assert zs.tolist() == [8, 26, 3, 1, 6] and crystal.tolist() == [0, 0, 1, 2, 2]
    assert torch.allclose(fraction.squeeze(1), torch.tensor([0.6, 0.4, 1.0, 2 / 3, 1 / 3]))
    assert element_of_atom.tolist() == [0, 1, 1, 0, 0, 2, 3, 3, 4]
    pairs = sorted(zip(self_idx.tolist(), nbr_idx.tolist()))
    assert pairs == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (3, 3), (3, 4), (4, 3), (4, 4)]


def _reference(model: Roost, graph) -> torch.Tensor:
    """The paper's equations for one crystal, with explicit loops over its elements."""
    zs, counts = torch.unique(graph.z, return_counts=True)
    w = counts.double() / counts.sum()
    if model.element_features == "matscholar":
        e = matscholar_table()[0][zs].double()
    else:
        e = torch.stack([graph.x[graph.z == z].double().mean(0) for z in zs])
    h = torch.cat([model.embedding.double()(e), w[:, None]], 1)
    n = len(zs)
    for layer in model.message_layers:
        heads = []
        for head in layer.heads:
            p = head.pow.double()
            out = []
            for i in range(n):
                pair = torch.stack([torch.cat([h[i], h[j]]) for j in range(n)])
                score = w ** p * head.gate(pair).squeeze(1).exp()
                a = score / score.sum()
                out.append((a[:, None] * head.message(pair)).sum(0))
            heads.append(torch.stack(out))
        h = h + torch.stack(heads).mean(0)
    pooled = []
    for head in model.pool_heads:
        score = w ** head.pow.double() * head.gate(h).squeeze(1).exp()
        pooled.append(((score / score.sum())[:, None] * head.message(h)).sum(0))
    out = torch.stack(pooled).mean(0)[None]
    if model.global_fc is not None:
        u = ((graph.u.double() - model.global_mean.double()) / model.global_std.double()).clamp(-10, 10)
        out = torch.cat([out, torch.nn.functional.softplus(model.global_fc(u))], 1)
    return model.output(model.trunk(out))[0]


@pytest.mark.parametrize("element_features", ["matscholar", "x"])
def test_encode_equals_the_papers_equations_per_crystal(sample_task, element_features):
    model = _model(sample_task, element_features=element_features).double().eval()
    graphs = [g.clone() for g in sample_task.graphs]
    for g in graphs:
        g.x = g.x.double()
    with torch.no_grad():
        batched = model.encode(_batch(graphs))
        expected = torch.stack([_reference(model, g) for g in graphs])
    torch.testing.assert_close(batched, expected, atol=1e-9, rtol=1e-9)


def test_hybrid_readout_and_batch_independence(sample_task):
    rng = np.random.default_rng(0)
    task = attach_global(sample_task, rng.standard_normal((10, 3)), ["a", "b", "c"], "toy")
    model = _model(task).double().eval()
    assert model.global_fc is not None and model.global_fc.in_features == 3
    graphs = [g.clone() for g in task.graphs]
    for g in graphs:
        g.x, g.u = g.x.double(), g.u.double()
    with torch.no_grad():
        together = model(_batch(graphs))
        alone = torch.cat([model(_batch([g])) for g in graphs])
        expected = torch.stack([model.head(_reference(model, g)) for g in graphs])
    torch.testing.assert_close(together, alone, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(together, expected, atol=1e-9, rtol=1e-9)
    assert _model(task, globals="none").global_fc is None


def test_config_mapping_and_refusals(sample_task):
    model = build_model("roost", sample_task, ModelConfig(hidden=64, layers=3, heads=3, dropout=0.0))
    assert model.embedding.out_features == 63 and model.embedding.in_features == 200
    assert len(model.message_layers) == 3 and len(model.pool_heads) == 3
    assert [fc.out_features for fc in model.trunk.fcs] == [1024] and model.trunk.out.out_features == 512
    assert [fc.out_features for fc in model.output.fcs] == [256, 128, 64] and model.head.in_features == 64
    with pytest.raises(HgimbError, match="trunk_hidden"):
        build_model("roost", sample_task, ModelConfig(options={"trunk_hidden": "64,x"}))
    with pytest.raises(HgimbError, match="element_features"):
        build_model("roost", sample_task, ModelConfig(options={"element_features": "magpie"}))
    batch = _batch(sample_task.graphs[:2])
    batch.z = batch.z.clone()
    batch.z[0] = 110  # darmstadtium: no Matscholar embedding
    with pytest.raises(HgimbError, match=r"atomic number\(s\) \[110\].*element_features=x"):
        _model(sample_task)(batch)


def test_elements_without_an_embedding_are_refused_by_structure(sample_task):
    from hgimb.data.task import Task

    graphs = [g.clone() for g in sample_task.graphs]
    graphs[4].z = graphs[4].z.clone()
    graphs[4].z[1] = 110
    odd = Task(name="odd", kind="graph", graphs=graphs, y=sample_task.y, class_names=sample_task.class_names,
               item_ids=sample_task.item_ids)
    with pytest.raises(HgimbError, match=rf"\[110\] in 1 structure\(s\) of 'odd' \(first: {sample_task.item_ids[4]}\)"):
        build_model("roost", odd, ModelConfig())
    build_model("roost", odd, ModelConfig(options={"element_features": "x"}))  # the graph's own inputs


def test_needs_atomic_numbers(sample_task):
    from hgimb.data.task import Task

    graphs = [g.clone() for g in sample_task.graphs]
    for g in graphs:
        del g.z
    bare = Task(name="bare", kind="graph", graphs=graphs, y=sample_task.y, class_names=sample_task.class_names)
    with pytest.raises(HgimbError, match="atomic numbers"):
        build_model("roost", bare, ModelConfig())


def test_trains_through_the_engine_and_is_deterministic(sample_task):
    task = make_split(sample_task, split="stratified", train_fraction=0.6, test_fraction=0.2, seed=0)
    cfg = RunConfig(dataset="cgcnn-sample", model="roost", remedy="threshold", epochs=4, batch_size=4, seed=3,
                    hidden=12, layers=2, heads=2, monitor="pr_auc", model_options=SMALL)
    first, again = train_task(task, cfg), train_task(task, cfg)
    assert torch.equal(first.outcome.logits, again.outcome.logits)
    assert torch.isfinite(first.outcome.logits).all() and "threshold" in first.metrics["posthoc"]


def test_batches_collate_only_what_roost_reads(sample_task):
    from types import SimpleNamespace

    from hgimb.engine.batching import GraphBatches

    model = _model(sample_task).eval()
    batches = GraphBatches(sample_task, SimpleNamespace(batch_size=4), torch.device("cpu"))
    chunk = torch.arange(6)
    batch = batches._batch(chunk, model)
    assert "edge_attr" not in batch and "edge_index" not in batch and torch.equal(batch.z, _batch(sample_task.graphs[:6]).z)
    with torch.no_grad():
        assert torch.equal(batches.logits(model, chunk), model(_batch(sample_task.graphs[:6])))
    cgcnn = build_model("cgcnn", sample_task, ModelConfig(hidden=8, layers=1))  # declares nothing: whole graphs
    assert "edge_attr" in batches._batch(chunk, cgcnn)
