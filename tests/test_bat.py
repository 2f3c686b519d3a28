"""bat (hgimb/imbalance/bat.py): the risk, posterior and link equations on a hand-made graph
computed by hand, the virtual nodes, composition, determinism, heterogeneous graphs, refusals and
a short end-to-end run on Cora."""
import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.utils import to_undirected

from hgimb.config import RunConfig
from hgimb.data.task import Task
from hgimb.engine.trainer import Trainer
from hgimb.errors import HgimbError
from hgimb.imbalance import BatchContext, RemedyContext, build_remedy
from hgimb.imbalance.bat import bat_plan
from hgimb.models import ModelConfig, build_model

from conftest import real_path

CITES = ("paper", "cites", "paper")

# ------------------------------------------------------------------ the hand-made case
# 7 nodes, 3 classes; training nodes 0, 1 (class 0), 2 (class 1), 5 (class 2): counts 2, 1, 1,
# class weights n_c / n_max = 1, 0.5, 0.5.
PROBS = torch.tensor([[0.70, 0.20, 0.10],
                      [0.60, 0.30, 0.10],
                      [0.20, 0.50, 0.30],
                      [0.50, 0.40, 0.10],
                      [0.40, 0.35, 0.25],
                      [0.10, 0.30, 0.60],
                      [0.30, 0.45, 0.25]])
TRAIN, LABELS = torch.tensor([0, 1, 2, 5]), torch.tensor([0, 0, 1, 2])
EDGES = to_undirected(torch.tensor([[0, 3, 4, 4, 1, 6, 3], [3, 4, 2, 5, 6, 2, 6]]))
X = torch.tensor([[1., 0.], [3., 0.], [0., 2.], [2., 2.], [6., 0.], [0., 5.], [0., 4.]])
# predicted classes 0 0 1 0 0 2 1; uncertainty 1 - max p = .3 .4 .5 .5 .6 .4 .55
# class means of the uncertainty: class 0 (nodes 0 1 3 4) .45, class 1 (2 6) .525, class 2 (5) .4
# risk = max(u - mean, 0) * weight: node 3 .05 * 1, node 4 .15 * 1, node 6 .025 * .5, others 0
RISK = torch.tensor([0, 0, 0, 0.05, 0.15, 0, 0.0125])
# bat1: neighbours' predicted classes -- node 3: 0 (0), 4 (0), 6 (1) -> (2/3, 1/3, 0), own class
# dropped -> (0, 1, 0); node 4: 3 (0), 2 (1), 5 (2) -> (0, 1/2, 1/2); node 6: 1 (0), 2 (1), 3 (0)
# -> (1, 0, 0). Link probability = risk * that.
P_BAT1 = torch.zeros(7, 3)
P_BAT1[3] = torch.tensor([0, 0.05, 0])
P_BAT1[4] = torch.tensor([0, 0.075, 0.075])
P_BAT1[6] = torch.tensor([0.0125, 0, 0])
# bat0: the node's own prediction without its predicted class, renormalised
P_BAT0 = torch.zeros(7, 3)
P_BAT0[3] = 0.05 * torch.tensor([0, 0.4 / 0.5, 0.1 / 0.5])
P_BAT0[4] = 0.15 * torch.tensor([0, 0.35 / 0.6, 0.25 / 0.6])
P_BAT0[6] = 0.0125 * torch.tensor([0.30 / 0.55, 0, 0.25 / 0.55])
# virtual features: class 0 mean of nodes 0 1 3 4, class 1 of 2 6, class 2 of 5
X_VIRTUAL = torch.tensor([[3., 0.5], [0., 3.], [0., 5.]])


class FixedModel(torch.nn.Module):
    """Returns fixed logits (stands in for the GNN's prediction pass)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, data):
        return self.logits


def hand_task(train=TRAIN, labels=LABELS, num_classes=3):
    data = HeteroData()
    data["paper"].x = X.clone()
    data["paper"].num_nodes = 7
    data[CITES].edge_index = EDGES.clone()
    y = PROBS.argmax(1)
    y[train] = labels
    rest = torch.tensor([i for i in range(7) if i not in set(train.tolist())])
    split = {"train": train, "val": rest[:1], "test": rest[1:]}
    return Task(name="hand", kind="node", class_names=[f"c{i}" for i in range(num_classes)], y=y, split=split,
                data=data, target_types=["paper"])


def ctx_for(task):
    train = task.split["train"]
    return RemedyContext(num_classes=task.num_classes, train_index=train, train_labels=task.y[train],
                         task=task, class_names=list(task.class_names))


def bat_on(task, params=None, probs=PROBS):
    remedy = build_remedy("bat", params).parts[0]
    remedy.check(ctx_for(task))
    remedy.setup(ctx_for(task))
    remedy.init_model(FixedModel(probs.log()))
    return remedy


@pytest.mark.parametrize("mode, expected", [("bat1", P_BAT1), ("bat0", P_BAT0)])
def test_risk_and_link_probabilities_by_hand(mode, expected):
    pred, risk, proba = bat_plan(PROBS.clone(), TRAIN, LABELS, torch.tensor([2, 1, 1]), mode, EDGES)
    assert pred.tolist() == [0, 0, 1, 0, 0, 2, 1]
    torch.testing.assert_close(risk, RISK)
    torch.testing.assert_close(proba, expected)


def test_augment_links_the_drawn_pairs_with_class_mean_virtual_nodes():
    task = hand_task()
    before_x, before_edges = task.data["paper"].x, task.data[CITES].edge_index
    remedy = bat_on(task)
    rng = torch.Generator().manual_seed(25)  # a seed whose draws link two pairs
    replay = torch.Generator().set_state(rng.get_state())
    aug = remedy.augment(task.data, BatchContext(TRAIN, 0), rng)
    # the pairs linked are exactly those whose uniform draw falls under the hand-computed probability
    node, cls = torch.nonzero(torch.rand(7, 3, generator=replay) < P_BAT1, as_tuple=True)
    expected = {(int(i), 7 + int(c)) for i, c in zip(node, cls)}
    assert expected == {(3, 8), (4, 9)}
    new = aug.data[CITES].edge_index[:, EDGES.size(1):]
    assert {(int(b), int(a)) for a, b in new.t() if a >= 7} == expected  # virtual -> node
    assert {(int(a), int(b)) for a, b in new.t() if a < 7} == expected  # node -> virtual: undirected
    assert torch.equal(aug.data[CITES].edge_index[:, :EDGES.size(1)], EDGES)
    torch.testing.assert_close(aug.data["paper"].x[7:], X_VIRTUAL)
    assert aug.data["paper"].num_nodes == 10
    assert aug.new_rows.tolist() == [7, 8, 9] and aug.new_targets.tolist() == [0, 1, 2] and aug.real_rows is None
    # the task's graph is untouched
    assert task.data["paper"].x is before_x and torch.equal(before_x, X) and task.data["paper"].num_nodes == 7
    assert task.data[CITES].edge_index is before_edges and torch.equal(before_edges, EDGES)


def test_only_risky_nodes_are_ever_linked():
    task = hand_task()
    remedy = bat_on(task)
    linked = set()
    for seed in range(1000):
        aug = remedy.augment(task.data, BatchContext(TRAIN, 0), torch.Generator().manual_seed(seed))
        linked |= {(int(a), int(b)) for a, b in aug.data[CITES].edge_index[:, EDGES.size(1):].t() if a < 7}
    assert linked == {(3, 8), (4, 8), (4, 9), (6, 7)}  # the non-zero entries of P_BAT1


def test_unlabelled_virtual_nodes_warmup_and_absent_class():
    task = hand_task()
    aug = bat_on(task, {"bat_virtual_labels": False}).augment(task.data, BatchContext(TRAIN, 0),
                                                               torch.Generator().manual_seed(0))
    assert aug.data["paper"].num_nodes == 10 and aug.new_rows.numel() == 0 and aug.new_targets.numel() == 0
    assert bat_on(task, {"bat_warmup": 2}).augment(task.data, BatchContext(TRAIN, 1), torch.Generator()) is None
    # class 2 without training nodes: no virtual node, no link towards it, zero risk weight
    task = hand_task(train=torch.tensor([0, 1, 2]), labels=torch.tensor([0, 0, 1]))
    remedy = bat_on(task)
    aug = remedy.augment(task.data, BatchContext(TRAIN[:3], 0), torch.Generator().manual_seed(0))
    assert aug.data["paper"].num_nodes == 9 and aug.new_targets.tolist() == [0, 1]
    assert remedy.last["proba"].shape == (7, 2)
    assert float(remedy.last["risk"][remedy.last["pred"] == 2].abs().sum()) == 0.0


# ------------------------------------------------------------------ training
def toy_task(hetero=False, n=60, seed=0):
    """Cora-shaped (one node type, one symmetric relation) or ACM-shaped (paper with features,
    paper-cite-paper and paper-ref-paper, featureless authors and subjects) with 3 imbalanced classes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(3, (n,), generator=g)
    data = HeteroData()
    data["paper"].x = torch.randn(n, 6, generator=g) + torch.nn.functional.one_hot(y, 6).float()
    data["paper"].num_nodes = n
    src, dst = torch.randint(n, (2, 3 * n), generator=g)
    keep = src != dst
    cites = torch.stack([src[keep], dst[keep]])
    if hetero:
        data["paper", "cite", "paper"].edge_index = cites
        data["paper", "ref", "paper"].edge_index = cites.flip(0)
        data["author"].num_nodes = 10
        data["subject"].num_nodes = 4
        papers = torch.arange(n)
        data["paper", "to_author", "author"].edge_index = torch.stack([papers, papers % 10])
        data["author", "to_paper", "paper"].edge_index = torch.stack([papers % 10, papers])
        data["paper", "to_subject", "subject"].edge_index = torch.stack([papers, y + (papers % 2)])
        data["subject", "to_paper", "paper"].edge_index = torch.stack([y + (papers % 2), papers])
    else:
        data[CITES].edge_index = to_undirected(cites, num_nodes=n)
    by_class = [torch.nonzero(y == c).flatten() for c in range(3)]
    train = torch.cat([by_class[0][:10], by_class[1][:10], by_class[2][:2]])
    rest = torch.tensor([i for i in range(n) if i not in set(train.tolist())])
    split = {"train": train, "val": rest[: len(rest) // 2], "test": rest[len(rest) // 2:]}
    return Task(name="toy", kind="node", class_names=["a", "b", "c"], y=y, split=split, data=data,
                target_types=["paper"])


def fit(task, model_name, remedy, params=None, epochs=3):
    cfg = RunConfig(dataset="toy", model=model_name, epochs=epochs, patience=epochs, hidden=8, layers=2, seed=0,
                    quiet=True)
    torch.manual_seed(0)
    model = build_model(model_name, task, ModelConfig(hidden=8, layers=2))
    return Trainer(task, model, build_remedy(remedy, params), cfg).fit()


@pytest.mark.parametrize("remedy", ["bat", "bat+balanced-softmax", "bat+tam", "bat+graphens"])
def test_bat_composes_and_trains(remedy):
    task = toy_task()
    params = {"tam_warmup": 0} if "tam" in remedy else None
    out = fit(task, "gcn", remedy, params)
    bat = out.remedy.parts[0]
    assert bat.last is not None and np.isfinite([h["train_loss"] for h in out.history]).all()
    assert task.data["paper"].num_nodes == 60 and task.data["paper"].x.size(0) == 60


def test_same_seed_same_run():
    a, b = fit(toy_task(), "gcn", "bat", epochs=4), fit(toy_task(), "gcn", "bat", epochs=4)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert torch.equal(a.logits, b.logits)


@pytest.mark.parametrize("model", ["rgcn", "gat", "simple-hgn"])
def test_acm_shaped_heterogeneous_graph(model):
    task = toy_task(hetero=True)
    out = fit(task, model, "bat", epochs=2)
    bat = out.remedy.parts[0]
    assert bat.rels == [("paper", "cite", "paper"), ("paper", "ref", "paper")]
    # bat1's neighbourhood: cite and ref merged, undirected, deduplicated
    assert bat.neighbours.size(1) == to_undirected(task.data["paper", "cite", "paper"].edge_index).size(1)
    rng = torch.Generator().manual_seed(0)
    for _ in range(50):  # steps until one draws a link
        aug = bat.augment(task.data, BatchContext(task.split["train"], 5), rng)
        links = bat.last["links"]
        if links.size(1):
            break
    assert links.size(1) > 0
    for rel in bat.rels:  # the same virtual edges, both directions, in each paper-paper relation
        assert torch.equal(aug.data[rel].edge_index[:, task.data[rel].edge_index.size(1):], links)
    rel = ("paper", "to_author", "author")
    assert aug.data[rel].edge_index is task.data[rel].edge_index


def test_refusals():
    # featureless target (Freebase's movie)
    task = toy_task(hetero=True)
    del task.data["paper"].x
    with pytest.raises(HgimbError, match="has none"):
        build_remedy("bat").setup(ctx_for(task))
    # no target-to-target relation
    task = toy_task(hetero=True)
    del task.data["paper", "cite", "paper"]
    del task.data["paper", "ref", "paper"]
    with pytest.raises(HgimbError, match="relation"):
        build_remedy("bat").setup(ctx_for(task))
    # graph tasks; two augmenting remedies
    ctx = ctx_for(toy_task())
    ctx.kind = "graph"
    with pytest.raises(HgimbError, match="node task"):
        build_remedy("bat").setup(ctx)
    with pytest.raises(HgimbError, match="bat_mode"):
        build_remedy("bat", {"bat_mode": "bat2"})
    with pytest.raises(HgimbError, match="full-graph"):
        cfg = RunConfig(dataset="toy", model="gcn", epochs=1, hidden=8, batch_size=4, quiet=True)
        task = toy_task()
        Trainer(task, build_model("gcn", task, ModelConfig(hidden=8)), build_remedy("bat"), cfg)


def test_end_to_end_on_cora():
    from hgimb.engine import run_experiment

    real_path("planetoid", "ind.cora.x")
    cfg = RunConfig(dataset="cora", model="gcn", remedy="bat", seed=0, epochs=4, patience=100,
                    imbalance_ratio=10, imbalance_type="step", plots=False, quiet=True, data_root=str(real_path()))
    run = run_experiment(cfg, write=False)
    bat = run.outcome.remedy.parts[0]
    assert run.metrics["remedy"] == "bat" and np.isfinite(run.metrics["test"]["macro_f1"])
    assert run.metrics["train_class_counts"] == [20, 20, 20, 20, 2, 2, 2]
    assert bat.classes.tolist() == list(range(7)) and bat.last["links"].size(1) > 0
