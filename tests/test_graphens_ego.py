"""graphens-ego (hgimb/imbalance/graphens_ego.py): GraphENS's input-space ego-network synthesis,
checked piece by piece against the equations of the authors' models/gens.py computed by hand, on
toy graphs, plus one short run on Cora."""
import math

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.utils import coalesce, to_undirected

from hgimb.config import RunConfig
from hgimb.data.task import Task
from hgimb.engine.trainer import Trainer
from hgimb.errors import HgimbError
from hgimb.imbalance import BatchContext, RemedyContext, build_remedy
from hgimb.imbalance.graph_augment import reverse_relation
from hgimb.imbalance.graphens_ego import (InRelation, mix_features, prediction_kl, sample_neighbours,
                                         saliency_mask)
from hgimb.models import ModelConfig, build_model

from conftest import real_path


# ------------------------------------------------------------------ toy graphs
def cora_like(n=60, d=80, seed=0):
    """One node type, sparse wide features (the models' sparse input path applies), a symmetric
    graph, imbalanced training labels (12, 12, 3)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, d, generator=g) < 0.05).float() * torch.rand(n, d, generator=g)
    ei = torch.randint(0, n, (2, 200), generator=g)
    data = HeteroData()
    data["paper"].x = x
    data["paper"].num_nodes = n
    data["paper", "cites", "paper"].edge_index = to_undirected(ei[:, ei[0] != ei[1]], num_nodes=n)
    y = torch.arange(n) % 3
    train = torch.cat([torch.nonzero(y == 0).flatten()[:12], torch.nonzero(y == 1).flatten()[:12],
                       torch.nonzero(y == 2).flatten()[:3]])
    rest = torch.tensor([i for i in range(n) if i not in set(train.tolist())])
    split = {"train": train, "val": rest[: len(rest) // 2], "test": rest[len(rest) // 2:]}
    return Task(name="toy", kind="node", class_names=["a", "b", "c"], y=y, split=split, data=data,
                target_types=["paper"])


def acm_like(n=40, seed=0, featureless_target=False):
    """ACM's shape: papers (target) cite/ref each other (ref = cite reversed), and link to authors,
    subjects (with features) and terms (featureless), each relation stored both ways."""
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    sizes = {"paper": n, "author": 25, "subject": 4, "term": 15}
    for t, k in sizes.items():
        data[t].num_nodes = k
        if t != "term" and not (t == "paper" and featureless_target):
            data[t].x = torch.randn(k, 6, generator=g)
    cite = torch.randint(0, n, (2, 80), generator=g)
    cite = coalesce(cite[:, cite[0] != cite[1]], num_nodes=n)
    data["paper", "cite", "paper"].edge_index = cite
    data["paper", "ref", "paper"].edge_index = coalesce(cite.flip(0), num_nodes=n)
    for other, per in (("author", 2), ("subject", 1), ("term", 3)):
        pa = torch.stack([torch.arange(n).repeat_interleave(per),
                          torch.randint(0, sizes[other], (n * per,), generator=g)])
        pa = coalesce(pa, num_nodes=max(n, sizes[other]))
        data["paper", f"to_{other}", other].edge_index = pa
        data[other, "to_paper", "paper"].edge_index = pa.flip(0)
    y = torch.arange(n) % 3
    train = torch.cat([torch.nonzero(y == 0).flatten()[:8], torch.nonzero(y == 1).flatten()[:8],
                       torch.nonzero(y == 2).flatten()[:2]])
    rest = torch.tensor([i for i in range(n) if i not in set(train.tolist())])
    split = {"train": train, "val": rest[: len(rest) // 2], "test": rest[len(rest) // 2:]}
    return Task(name="toy-acm", kind="node", class_names=["a", "b", "c"], y=y, split=split, data=data,
                target_types=["paper"])


def trainer(task, remedy, model="gcn", epochs=4, params=None, seed=0, options=None):
    cfg = RunConfig(dataset="toy", model=model, remedy=remedy, epochs=epochs, hidden=8, layers=2, seed=seed,
                    patience=100, quiet=True, plots=False)
    torch.manual_seed(seed)
    net = build_model(model, task, ModelConfig(hidden=8, layers=2, options=options or {}))
    return Trainer(task, net, build_remedy(remedy, params or {}), cfg)


# ------------------------------------------------------------------ the pieces vs the code's equations
def test_saliency_mask_keeps_the_targets_salient_columns_as_many_as_sigmoid_kl_says():
    # D = 8, keep_prob 0.5: K = int(8 * 0.5) = 4 columns drawn by |saliency| + 1e-10
    saliency = torch.zeros(3, 8)
    saliency[:, 2], saliency[:, 5] = 4.0, -1.0  # two salient columns (sign ignored), the rest ~1e-10
    kl = torch.tensor([0.0, 0.0, 60.0])
    gen = torch.Generator().manual_seed(0)
    mask = saliency_mask(saliency, kl, 0.5, gen)
    # KL = 0: floor(sigmoid(0) * 4) = 2 columns kept -- the first two draws, which are the two
    # salient ones (every other column has probability ~1e-10 / 5)
    assert mask[0].nonzero().flatten().tolist() == [2, 5] and mask[1].nonzero().flatten().tolist() == [2, 5]
    # KL = 60: sigmoid(20) rounds to 1 in float32, floor(1 * 4) = 4 distinct columns, the salient two among them
    assert int(mask[2].sum()) == 4 and bool(mask[2, 2]) and bool(mask[2, 5])
    # K = int(8 * 0.1) = 0: nothing kept; kl_mask 0 still keeps the first draw (the code's repeat)
    assert not saliency_mask(saliency, kl, 0.1, gen).any()
    one = saliency_mask(saliency[:1], torch.tensor([-50.0]), 0.25, gen)  # K = 2, floor(sigmoid(-50/3) * 2) = 0
    assert int(one.sum()) == 1


def test_feature_mixing_is_lam_mixup_with_source_columns_kept():
    x_src = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    x_dst = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    lam = torch.tensor([[0.25]])
    keep = torch.tensor([[False, True, False, True]])
    out = mix_features(x_src, x_dst, lam, keep)
    # lam * src + (1 - lam) * dst, lam = 1 on kept columns
    assert torch.allclose(out, torch.tensor([[0.25 * 1 + 0.75 * 10, 2.0, 0.25 * 3 + 0.75 * 30, 4.0]]))
    assert torch.allclose(mix_features(x_src, x_dst, lam), 0.25 * x_src + 0.75 * x_dst)  # warm-up: plain mixup


def test_prediction_kl_and_the_neighbour_mixture():
    p_src = torch.tensor([[0.7, 0.2, 0.1]])
    p_dst = torch.tensor([[0.2, 0.5, 0.3]])
    kl = sum(a * math.log(a / b) for a, b in zip(p_src[0].tolist(), p_dst[0].tolist()))
    assert prediction_kl(p_src, p_dst).item() == pytest.approx(kl, rel=1e-5)
    assert prediction_kl(p_src, p_src).item() == pytest.approx(0.0, abs=1e-6)
    # the code's ratio softmax([0, -KL]) puts sigmoid(KL) on the source
    ratio = torch.softmax(torch.tensor([0.0, -kl]), 0)
    assert ratio[0].item() == pytest.approx(1 / (1 + math.exp(-kl)), rel=1e-6)

    # graph: node 0 (source) has in-neighbours {2, 3}; node 1 (target) has {4}; 5 is isolated
    data = HeteroData()
    data["paper"].num_nodes = 6
    data["paper", "cites", "paper"].edge_index = torch.tensor([[2, 3, 4], [0, 0, 1]])
    rel = InRelation.build(data, ("paper", "cites", "paper"), "paper")
    assert rel.reverse is None  # one-way relation, no reverse stored
    assert rel.degree.tolist() == [2, 1, 0, 0, 0, 0] and rel.degree_hist.tolist() == [4.0, 1.0, 1.0]
    # the mixture of the L1-normalised in-neighbour rows [0, 0, .5, .5, 0, 0] and [0, 0, 0, 0, 1, 0],
    # and of a pair sharing a neighbour (0 and 0: weights add up to the row itself)
    row, nbr, w = rel.mixture(torch.tensor([0, 0]), torch.tensor([1, 0]), torch.tensor([0.8, 0.6]))
    assert row.tolist() == [0, 0, 0, 1, 1] and nbr.tolist() == [2, 3, 4, 2, 3]
    assert torch.allclose(w, torch.tensor([0.4, 0.4, 0.2, 0.5, 0.5]))
    # many copies of the pair (0 -> 1): degree ~ histogram [4, 1, 1] / 6 capped at deg(0) = 2, so
    # P(d = 0) = 4/6, P(d = 1) = P(d = 2) = 1/6; the first neighbour drawn follows the mixture
    # share * [.5 on 2, .5 on 3] + (1 - share) * [1 on 4]
    m, share = 30000, 0.8
    src, dst = torch.zeros(m, dtype=torch.long), torch.ones(m, dtype=torch.long)
    owner, nbr = sample_neighbours(rel, src, dst, torch.full((m,), share), torch.Generator().manual_seed(0))
    per_node = torch.bincount(owner, minlength=m)
    assert per_node.max() <= 2
    freq = torch.bincount(per_node, minlength=3).float() / m
    assert torch.allclose(freq, torch.tensor([4 / 6, 1 / 6, 1 / 6]), atol=0.015)
    assert set(nbr.tolist()) <= {2, 3, 4}  # nothing outside the two neighbourhoods
    first = nbr[torch.cat([torch.tensor([True]), owner[1:] != owner[:-1]])]  # each node's first draw
    got = torch.bincount(first, minlength=6).float() / first.numel()
    assert torch.allclose(got[[2, 3, 4]], torch.tensor([share / 2, share / 2, 1 - share]), atol=0.02)
    two = nbr.view(-1)[torch.repeat_interleave(per_node == 2, per_node)]
    assert (two.view(-1, 2)[:, 0] != two.view(-1, 2)[:, 1]).all()  # without replacement


def test_reverse_relations_found():
    task = acm_like()
    d = task.data
    assert reverse_relation(d, ("paper", "cite", "paper")) == ("paper", "ref", "paper")
    assert reverse_relation(d, ("author", "to_paper", "paper")) == ("paper", "to_author", "author")
    cora = cora_like().data
    assert reverse_relation(cora, ("paper", "cites", "paper")) == ("paper", "cites", "paper")  # symmetric: itself


# ------------------------------------------------------------------ the augmented graph
def test_augmentation_leaves_the_graph_untouched_and_feeds_saliency_back():
    task = cora_like()
    before = {"x": task.data["paper"].x.clone(), "ei": task.data["paper", "cites", "paper"].edge_index.clone()}
    tr = trainer(task, "graphens-ego", epochs=4)
    part = tr.remedy.parts[0]
    tr.train_epoch(0)  # warm-up step
    assert part.leaf is not None and part.leaf.grad is not None  # the dense path passed dL/dx back
    assert part.leaf.grad[: task.data["paper"].num_nodes].abs().sum() > 0
    tr.train_epoch(1)
    tr.train_epoch(2)  # saliency, KL-mixed neighbours
    data = tr.batching.augmentable_graph()
    aug = part.augment(data, BatchContext(task.split["train"], 3), torch.Generator().manual_seed(0))
    n, d = 60, task.data["paper"].x.size(1)
    m = aug.new_targets.numel()
    assert m == 9 and aug.new_targets.tolist() == [2] * 9  # 12 - 3 synthetic nodes of the minority class
    assert aug.data["paper"].x.shape == (n + m, d) and aug.data["paper"].x.requires_grad
    ei = aug.data["paper", "cites", "paper"].edge_index
    new = ei[:, before["ei"].size(1):]
    assert (new >= n).any(0).all()  # every appended edge touches a synthetic node
    assert torch.equal(coalesce(new), coalesce(new.flip(0)))  # symmetric relation: both directions
    assert torch.equal(task.data["paper"].x, before["x"]) and not task.data["paper"].x.requires_grad
    assert torch.equal(task.data["paper", "cites", "paper"].edge_index, before["ei"])
    assert task.data["paper"].num_nodes == n


def test_in_edges_only_reach_the_synthetic_nodes():
    """ens_edges=in (the code's direction): only neighbour -> synthetic edges are appended, and
    the gcn backbone keeps them one way on a graph stored both ways: with the GraphENS code's
    normalisation (norm=target, 1 / deg of the receiving node) the real nodes' outputs are what
    they are without the synthetic nodes (and not so with ens_edges=both)."""
    task = cora_like()
    n = task.data["paper"].num_nodes
    outputs = {}
    for mode in ("in", "both"):
        tr = trainer(task, "graphens-ego", epochs=4, params={"ens_edges": mode}, options={"norm": "target"})
        part = tr.remedy.parts[0]
        for epoch in range(3):
            tr.train_epoch(epoch)
        data = tr.batching.augmentable_graph()
        aug = part.augment(data, BatchContext(task.split["train"], 3), torch.Generator().manual_seed(0))
        new = aug.data["paper", "cites", "paper"].edge_index[:, task.data["paper", "cites", "paper"].edge_index.size(1):]
        if mode == "in":
            assert (new[1] >= n).all() and (new[0] < n).all()  # into the synthetic nodes only
        tr.model.eval()
        with torch.no_grad():
            outputs[mode] = (tr.model(aug.data)[:n], tr.model(task.data))
    real_in, plain_in = outputs["in"]
    assert torch.allclose(real_in, plain_in, atol=1e-5)
    real_both, plain_both = outputs["both"]
    assert not torch.allclose(real_both, plain_both, atol=1e-5)


def test_train_predictions_are_the_previous_training_pass():
    """ens_pred=train: the KL's predictions come from the previous training pass's logits of the
    real nodes (the code's prev_out). With no dropout, no weight update and one-way synthetic
    edges under norm=target, those logits are exactly the model's outputs on the plain graph."""
    task = cora_like()
    cfg = RunConfig(dataset="toy", model="gcn", remedy="graphens-ego", epochs=3, hidden=8, layers=2, seed=0, lr=0.0,
                    dropout=0.0, patience=100, quiet=True, plots=False)
    torch.manual_seed(0)
    net = build_model("gcn", task, ModelConfig(hidden=8, layers=2, dropout=0.0, options={"norm": "target"}))
    tr = Trainer(task, net, build_remedy("graphens-ego", {"ens_pred": "train", "ens_edges": "in"}), cfg)
    part = tr.remedy.parts[0]
    tr.train_epoch(0)
    assert part.prev_logits is not None and part.prev_logits.shape == (task.data["paper"].num_nodes, 3)
    tr.model.eval()
    with torch.no_grad():
        assert torch.allclose(part.prev_logits, tr.model(task.data), atol=1e-5)
    tr.train_epoch(1)  # the KL step reads them (no eval pass needed)
    default = trainer(task, "graphens-ego", epochs=2)
    default.train_epoch(0)
    assert default.remedy.parts[0].prev_logits is None  # ens_pred=eval keeps nothing


@pytest.mark.parametrize("remedy", ["graphens-ego+tam", "graphens-ego+balanced-softmax"])
def test_composes_with_loss_remedies(remedy):
    tr = trainer(cora_like(), remedy, epochs=4, params={"tam_warmup": 1} if "tam" in remedy else None)
    out = tr.fit()
    assert out.epochs_run == 4 and all(np.isfinite(h["train_loss"]) for h in out.history)


def test_same_seed_same_run():
    runs = [trainer(cora_like(), "graphens-ego", epochs=4).fit() for _ in range(2)]
    assert [h["train_loss"] for h in runs[0].history] == [h["train_loss"] for h in runs[1].history]
    assert torch.equal(runs[0].logits, runs[1].logits)
    other = trainer(cora_like(), "graphens-ego", epochs=4, seed=1).fit()
    assert [h["train_loss"] for h in other.history] != [h["train_loss"] for h in runs[0].history]


def test_acm_shaped_heterogeneous_graph():
    task = acm_like()
    tr = trainer(task, "graphens-ego", model="rgcn", epochs=3)
    part = tr.remedy.parts[0]
    assert {r.rel: r.reverse for r in part.relations} == {
        ("paper", "cite", "paper"): ("paper", "ref", "paper"), ("paper", "ref", "paper"): ("paper", "cite", "paper"),
        ("author", "to_paper", "paper"): ("paper", "to_author", "author"),
        ("subject", "to_paper", "paper"): ("paper", "to_subject", "subject"),
        ("term", "to_paper", "paper"): ("paper", "to_term", "term")}
    tr.train_epoch(0)
    data = tr.batching.augmentable_graph()
    for epoch in (1, 0):  # sampled neighbours (saliency of the step above), warm-up (copied neighbours)
        aug = part.augment(data, BatchContext(task.split["train"], epoch), torch.Generator().manual_seed(epoch))
        n, m = 40, aug.new_targets.numel()
        assert m == 6 and aug.data["paper"].x.size(0) == n + m
        for rel, rev in (((("paper", "cite", "paper")), ("paper", "ref", "paper")),
                         (("author", "to_paper", "paper"), ("paper", "to_author", "author")),
                         (("term", "to_paper", "paper"), ("paper", "to_term", "term"))):
            a, b = aug.data[rel].edge_index, aug.data[rev].edge_index
            assert torch.equal(coalesce(a), coalesce(b.flip(0)))  # reverse relations stay consistent
            added = a[:, data[rel].edge_index.size(1):]
            assert added.size(1) and (added >= n).any(0).all()  # every new edge touches a synthetic paper
            if rel[0] != "paper":  # (cite also holds the reverse of the ref edges)
                assert (added[1] >= n).all()  # author/term -> synthetic paper
            if epoch == 0 and rel[0] == "author":  # warm-up: the source's authors (every paper has one)
                assert torch.bincount(added[1] - n, minlength=m).min() >= 1
        assert data["paper"].x.size(0) == n  # untouched
    out = tr.fit()
    assert all(np.isfinite(h["train_loss"]) for h in out.history)


def test_featureless_target_and_graph_tasks_refused():
    task = acm_like(featureless_target=True)
    with pytest.raises(HgimbError, match="'paper' has none"):
        trainer(task, "graphens-ego", model="rgcn")
    ctx = RemedyContext(num_classes=2, train_index=torch.arange(4), train_labels=torch.tensor([0, 0, 0, 1]),
                        kind="graph")
    with pytest.raises(HgimbError, match="graph task"):
        build_remedy("graphens-ego").setup(ctx)
    with pytest.raises(HgimbError, match="ens_warmup must be"):
        build_remedy("graphens-ego", {"ens_warmup": 0})


# ------------------------------------------------------------------ end to end on Cora
def test_short_run_on_cora():
    from hgimb.engine import run_experiment

    real_path("planetoid", "ind.cora.x")
    cfg = RunConfig(dataset="cora", model="gcn", model_options={"style": "reference"}, remedy="graphens-ego",
                    seed=0, epochs=4, patience=100, hidden=64, imbalance_ratio=10, imbalance_type="step",
                    plots=False, quiet=True, data_root=str(real_path()))
    result = run_experiment(cfg, write=False)
    assert result.metrics["remedy"] == "graphens-ego" and np.isfinite(result.metrics["test"]["macro_f1"])
    assert result.metrics["train_class_counts"] == [20, 20, 20, 20, 2, 2, 2]


@pytest.mark.parametrize("model", ["gat", "simple-hgn"])
def test_other_heterogeneous_backbones(model):
    out = trainer(acm_like(), "graphens-ego", model=model, epochs=3).fit()
    assert out.epochs_run == 3 and all(np.isfinite(h["train_loss"]) for h in out.history)
