"""The ``augment`` hook (input-level graph augmentation) and its building block append_nodes."""
import pytest
import torch
from torch_geometric.data import HeteroData

from hgimb.config import RunConfig
from hgimb.data.task import Task
from hgimb.engine.trainer import Trainer
from hgimb.errors import HgimbError
from hgimb.imbalance import GraphAugmentation, Remedy, build_remedy, compose
from hgimb.imbalance.graph_augment import append_nodes, node_features, target_relations
from hgimb.models import ModelConfig, build_model


def hetero_task(n_paper=12, n_author=5, two_targets=False):
    g = torch.Generator().manual_seed(0)
    data = HeteroData()
    data["paper"].x = torch.randn(n_paper, 4, generator=g)
    data["paper"].num_nodes = n_paper
    data["author"].num_nodes = n_author  # featureless
    src = torch.arange(n_paper)
    data["paper", "cites", "paper"].edge_index = torch.stack([src, (src + 1) % n_paper])
    data["paper", "by", "author"].edge_index = torch.stack([src, src % n_author])
    data["author", "wrote", "paper"].edge_index = torch.stack([src % n_author, src])
    y = torch.arange(n_paper) % 3
    targets = ["paper"]
    if two_targets:
        data["venue"].x = torch.randn(3, 4, generator=g)
        data["venue"].num_nodes = 3
        y = torch.cat([y, torch.tensor([0, 1, 2])])
        targets = ["paper", "venue"]
    split = {"train": torch.arange(0, 6), "val": torch.arange(6, 9), "test": torch.arange(9, n_paper)}
    return Task(name="toy", kind="node", class_names=["a", "b", "c"], y=y, split=split, data=data,
                target_types=targets)


def test_append_nodes_shares_untouched_tensors_and_places_rows():
    task = hetero_task()
    data = task.data
    x_new = torch.ones(2, 4)
    edges = {("paper", "cites", "paper"): torch.tensor([[12, 13], [0, 1]]),
             ("author", "wrote", "paper"): torch.tensor([[0], [13]])}
    aug = append_nodes(data, task.target_types, "paper", x_new, edges, torch.tensor([2, 1]))
    assert data["paper"].num_nodes == 12 and data["paper"].x.size(0) == 12  # the task's graph untouched
    assert data["paper", "cites", "paper"].edge_index.size(1) == 12
    assert aug.data["paper"].num_nodes == 14 and torch.equal(aug.data["paper"].x[12:], x_new)
    assert aug.data["paper", "cites", "paper"].edge_index.size(1) == 14
    assert aug.data["paper", "by", "author"].edge_index is data["paper", "by", "author"].edge_index  # shared
    assert aug.new_rows.tolist() == [12, 13] and aug.new_targets.tolist() == [2, 1] and aug.real_rows is None
    assert target_relations(data, "paper") == list(data.edge_types)
    with pytest.raises(HgimbError, match="index outside"):
        append_nodes(data, task.target_types, "paper", x_new, {("paper", "cites", "paper"): torch.tensor([[14], [0]])})


def test_append_nodes_shifts_later_target_types_and_refuses_featureless():
    task = hetero_task(two_targets=True)
    aug = append_nodes(task.data, task.target_types, "paper", torch.zeros(1, 4), {}, torch.tensor([0]))
    assert aug.new_rows.tolist() == [12]
    assert aug.real_rows.tolist() == list(range(12)) + [13, 14, 15]  # venues move down one row
    with pytest.raises(HgimbError, match="has none"):
        node_features(task.data, "author", "graphsha")


class AppendOne(Remedy):
    """Test remedy: each step appends one synthetic copy of the first training node (label 2),
    linked to node 0, and records what the loss sees."""

    name = "test-append-one"
    params = {}

    def __init__(self):
        super().__init__()
        self.seen = []

    def augment(self, data, step, rng):
        x = data["paper"].x
        n = x.size(0)
        return append_nodes(data, ["paper"], "paper", x[:1].clone(), {("paper", "cites", "paper"): torch.tensor([[n], [0]])},
                            torch.tensor([2]))

    def loss(self, logits, target, epoch):
        self.seen.append((logits.size(0), target[-1].item()))
        return torch.nn.functional.cross_entropy(logits, target)


def test_trainer_feeds_augmented_rows_to_the_loss():
    task = hetero_task()
    cfg = RunConfig(dataset="toy", model="rgcn", epochs=3, hidden=8, layers=2, seed=0, quiet=True)
    model = build_model("rgcn", task, ModelConfig(hidden=8, layers=2))
    remedy = AppendOne()
    Trainer(task, model, remedy, cfg).fit()
    assert remedy.seen and all(rows == 6 + 1 and last == 2 for rows, last in remedy.seen)
    assert task.data["paper"].num_nodes == 12


def test_augment_is_exclusive_and_full_graph_only():
    class Other(Remedy):
        name = "test-append-two"
        params = {}

        def augment(self, data, step, rng):
            return None

    with pytest.raises(HgimbError, match="input graph"):
        compose([AppendOne(), Other()])
    task = hetero_task()
    cfg = RunConfig(dataset="toy", model="rgcn", epochs=1, hidden=8, layers=2, batch_size=4, quiet=True)
    model = build_model("rgcn", task, ModelConfig(hidden=8, layers=2))
    with pytest.raises(HgimbError, match="full-graph"):
        Trainer(task, model, AppendOne(), cfg)
