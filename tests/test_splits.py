"""Splits: stratification, long-tail/step profiles, determinism, leakage, K-fold, errors."""
import math

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData

from hgimb.data.splits import (class_counts_table, imbalance_quotas, kfold_splits, make_split)
from hgimb.data.task import SPLITS, Task
from hgimb.errors import HgimbError


def make_task(counts, split=None, unlabelled=0, seed=0):
    """A one-node-type task with ``counts[c]`` items of class c (shuffled) and optional unlabelled items."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.repeat(np.arange(len(counts)), counts), -np.ones(unlabelled, dtype=np.int64)])
    y = torch.as_tensor(rng.permutation(y), dtype=torch.long)
    data = HeteroData()
    data["paper"].num_nodes = len(y)
    return Task(name="toy", kind="node", class_names=[f"c{i}" for i in range(len(counts))], y=y,
                split=split or {}, data=data, target_types=["paper"])


def official_task(train_counts, test_counts, val_counts=None, seed=0):
    """A task with an official split holding exactly the given per-class counts."""
    parts = {"train": train_counts, "test": test_counts}
    if val_counts is not None:
        parts["val"] = val_counts
    total = np.sum([np.asarray(c) for c in parts.values()], axis=0)
    task = make_task(total.tolist(), seed=seed)
    y = task.y.numpy()
    split = {}
    taken = np.zeros(len(y), dtype=bool)
    for name, counts in parts.items():
        idx = []
        for c, n in enumerate(counts):
            free = np.flatnonzero((y == c) & ~taken)[:n]
            taken[free] = True
            idx.append(free)
        split[name] = torch.as_tensor(np.sort(np.concatenate(idx)))
    if val_counts is None:
        split["val"] = torch.empty(0, dtype=torch.long)
    task.split = split
    task.meta["official_split"] = True
    return task


def counts(task, part):
    return task.class_counts(part).tolist()


def as_sets(task):
    return {p: set(task.split[p].tolist()) for p in SPLITS}


def assert_disjoint(task):
    sets = as_sets(task)
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]


# ---------------------------------------------------------------------------- stratification
def test_stratified_split_keeps_class_proportions_within_one_item():
    sizes = [200, 97, 41, 13, 6]
    task = make_split(make_task(sizes, unlabelled=30), split="stratified", train_fraction=0.6, test_fraction=0.25,
                      seed=3)
    fractions = {"train": 0.6, "val": 0.15, "test": 0.25}
    for part, f in fractions.items():
        got = np.array(counts(task, part))
        assert np.all(np.abs(got - f * np.array(sizes)) <= 1), (part, got)
    assert_disjoint(task)
    # every labelled item is used exactly once, unlabelled ones never
    used = torch.cat([task.split[p] for p in SPLITS])
    assert sorted(used.tolist()) == sorted(torch.nonzero(task.y >= 0).flatten().tolist())
    assert task.meta["split_mode"] == "stratified" and task.meta["official_split"] is False


def test_small_classes_still_reach_val_and_test():
    task = make_split(make_task([50, 3, 2, 1]), split="stratified", seed=0)
    assert counts(task, "train")[1:] == [1, 1, 1]
    assert counts(task, "val")[1] == 1 and counts(task, "test")[1:3] == [1, 1]


def test_official_split_moves_a_stratified_val_fraction_of_train():
    task = official_task([400, 180, 50], [900, 400, 100])
    new = make_split(task, split="official", val_fraction=0.2, seed=1)
    assert counts(new, "val") == [80, 36, 10]
    assert counts(new, "train") == [320, 144, 40]
    assert torch.equal(new.split["test"], task.split["test"])
    sets = as_sets(new)
    assert sets["train"] | sets["val"] == set(task.split["train"].tolist())
    assert_disjoint(new)
    assert new.meta["split_mode"] == "official+val" and new.meta["official_split"] is True


def test_official_split_with_val_is_kept():
    task = official_task([20, 20], [50, 50], val_counts=[10, 10])
    new = make_split(task, split="official", seed=5)
    for part in SPLITS:
        assert torch.equal(new.split[part], task.split[part])


def test_task_without_split_falls_back_to_stratified():
    new = make_split(make_task([30, 20, 10]), split="official", seed=0)
    assert new.meta["split_mode"] == "stratified (no official split)"
    assert counts(new, "train") == [24, 16, 8] and counts(new, "test") == [3, 2, 1]


def test_per_class_split():
    task = make_split(make_task([100, 60, 25, 4, 1]), split="per-class", per_class=20, seed=2)
    assert counts(task, "train") == [20, 20, 20, 2, 1]
    assert counts(task, "val") == [40, 20, 2, 1, 0]  # the rest halves (val 0.1 : test 0.1)
    assert counts(task, "test") == [40, 20, 3, 1, 0]
    assert_disjoint(task)


# ---------------------------------------------------------------------------- imbalance
@pytest.mark.parametrize("ratio,expected", [(10, [20, 11, 6, 4, 2]), (100, [20, 6, 2, 1, 1]), (1, [20] * 5)])
def test_long_tail_counts(ratio, expected):
    task = make_split(make_task([60] * 5), split="per-class", per_class=20, imbalance_ratio=ratio, seed=0)
    # ties broken by class index: class 0 is the head
    assert counts(task, "train") == expected
    assert task.meta["train_class_counts_before"] == [20] * 5
    assert task.meta["imbalance_ratio"] == ratio and task.meta["imbalance_type"] == "long-tail"


def test_long_tail_and_step_follow_training_count_order():
    # training counts 10, 30, 30, 5 -> order class1, class2 (tie: lower index first), class0, class3
    q = imbalance_quotas([10, 30, 30, 5], 10, "long-tail")
    exact = [30 * 10 ** (-r / 3) for r in range(4)]  # 30, 13.9, 6.5, 3.0
    assert q.tolist() == [round(exact[2]), 30, round(exact[1]), round(exact[3])] == [6, 30, 14, 3]
    # step: the C//2 = 2 last classes of that order are the minority, at round(30 / 10) = 3
    assert imbalance_quotas([10, 30, 30, 5], 10, "step").tolist() == [3, 30, 30, 3]
    # a class smaller than its quota keeps what it has
    assert imbalance_quotas([40, 2, 30], 4, "long-tail").tolist() == [40, 2, 20]  # quota of class1: 10
    assert imbalance_quotas([100, 100, 100], 1000, "long-tail").tolist() == [100, 3, 1]


@pytest.mark.parametrize("num_classes,ratio", [(7, 10), (5, 20), (2, 50), (3, 3)])
def test_step_counts(num_classes, ratio):
    task = make_split(make_task([50] * num_classes), split="per-class", per_class=30, imbalance_ratio=ratio,
                      imbalance_type="step", seed=1)
    minority = num_classes // 2
    expected = [30] * (num_classes - minority) + [max(1, math.floor(30 / ratio + 0.5))] * minority
    assert counts(task, "train") == expected


def test_imbalance_touches_train_only_and_nests():
    base = official_task([300, 200, 100, 50], [100, 100, 100, 100])
    balanced = make_split(base, imbalance_ratio=1, seed=4)
    tail10 = make_split(base, imbalance_ratio=10, seed=4)
    tail50 = make_split(base, imbalance_ratio=50, imbalance_type="long-tail", seed=4)
    for t in (tail10, tail50):
        assert torch.equal(t.split["val"], balanced.split["val"])
        assert torch.equal(t.split["test"], balanced.split["test"])
        assert_disjoint(t)
    before = counts(balanced, "train")
    assert tail10.meta["train_class_counts_before"] == before == [240, 160, 80, 40]
    assert counts(tail10, "train") == [240, 111, 52, 24]  # 240 * 10 ** (-r / 3), rounded
    # removed items are unused, and a larger ratio keeps a subset of a smaller ratio's items
    assert as_sets(tail50)["train"] <= as_sets(tail10)["train"] <= as_sets(balanced)["train"]
    assert class_counts_table(tail10)["unused"] == [b - a for a, b in zip(counts(tail10, "train"), before)]


def test_determinism():
    task = make_task([120, 60, 30, 15])
    kwargs = dict(split="stratified", imbalance_ratio=5)
    a, b, c = make_split(task, seed=7, **kwargs), make_split(task, seed=7, **kwargs), make_split(task, seed=8, **kwargs)
    for part in SPLITS:
        assert torch.equal(a.split[part], b.split[part])
    assert not torch.equal(a.split["train"], c.split["train"])
    assert counts(a, "train") == counts(c, "train")  # same counts, different items
    assert task.split == {}  # the input task is not modified


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,match", [
    (dict(imbalance_ratio=0.5), "imbalance-ratio"),
    (dict(imbalance_ratio=float("nan")), "imbalance-ratio"),
    (dict(imbalance_type="zipf"), "imbalance-type"),
    (dict(split="random"), "--split"),
    (dict(split="per-class"), "per-class"),
    (dict(split="stratified", train_fraction=0.9, test_fraction=0.1), "no validation"),
    (dict(split="stratified", test_fraction=1.5), "test-fraction"),
    (dict(seed=-1), "seed"),
])
def test_bad_arguments_raise_one_line_errors(kwargs, match):
    with pytest.raises(HgimbError, match=match) as err:
        make_split(make_task([40, 40, 40]), **kwargs)
    assert "\n" not in str(err.value)


def test_class_without_training_items_is_an_error():
    task = official_task([30, 20, 0], [10, 10, 10])
    with pytest.raises(HgimbError, match="'c2'.*no training"):
        make_split(task, split="official")
    with pytest.raises(HgimbError, match="no training"):  # a class with no labelled item at all
        make_split(make_task([30, 30, 0]), split="stratified")


# ---------------------------------------------------------------------------- k-fold
def test_kfold_covers_every_labelled_item_once_as_test():
    task = make_task([60, 25, 10, 5], unlabelled=7)
    folds = kfold_splits(task, 5, seed=3, val_fraction=0.2)
    assert len(folds) == 5
    tests = torch.cat([f.split["test"] for f in folds])
    labelled = torch.nonzero(task.y >= 0).flatten()
    assert sorted(tests.tolist()) == sorted(labelled.tolist())
    for k, fold in enumerate(folds):
        assert_disjoint(fold)
        assert as_sets(fold)["train"] | as_sets(fold)["val"] | as_sets(fold)["test"] == set(labelled.tolist())
        assert counts(fold, "test") == [12, 5, 2, 1]  # stratified folds
        assert np.all(np.abs(np.array(counts(fold, "val")) - 0.2 * np.array([48, 20, 8, 4])) <= 1)
        assert fold.meta["fold"] == k
    again = kfold_splits(task, 5, seed=3, val_fraction=0.2)
    assert all(torch.equal(a.split["test"], b.split["test"]) for a, b in zip(folds, again))


@pytest.mark.parametrize("folds,match", [(1, ">= 2"), (6, "smallest class 'c3'")])
def test_kfold_errors(folds, match):
    with pytest.raises(HgimbError, match=match):
        kfold_splits(make_task([60, 25, 10, 5]), folds)


# ---------------------------------------------------------------------------- real data
def _load_or_skip(name, data_root):
    from hgimb.data import DATASETS, load_dataset

    if name not in DATASETS:
        pytest.skip(f"dataset loader '{name}' not available yet")
    return load_dataset(name, data_root)


def test_cora_long_tail_on_official_split(data_root):
    task = _load_or_skip("cora", data_root)
    new = make_split(task, split="official", imbalance_ratio=10, seed=0)
    before = new.meta["train_class_counts_before"]
    assert before == counts(make_split(task, split="official", seed=0), "train")
    got = counts(new, "train")
    assert max(got) == max(before) and min(got) == max(1, round(max(before) / 10))
    assert torch.equal(new.split["test"], task.split["test"]) or task.split["test"].numel() == 0
    assert_disjoint(new)


def test_freebase_official_split_gets_val_from_train(data_root):
    task = _load_or_skip("freebase", data_root)
    new = make_split(task, split="official", val_fraction=0.2, seed=0)
    original = task.split["train"]
    if task.split.get("val") is None or task.split["val"].numel() == 0:
        assert new.split["val"].numel() + new.split["train"].numel() == original.numel()
        assert np.all(np.abs(np.array(counts(new, "val")) - 0.2 * np.array(counts(task, "train"))) <= 1)
    assert torch.equal(new.split["test"], task.split["test"])
    assert_disjoint(new)


# ---------------------------------------------------------------------------- GraphSHA's construction
def test_graphsha_quotas_follow_the_reference_formula():
    from hgimb.data.splits import graphsha_quotas

    # Cora's `full` split training counts; int(341 * mu^i), mu = 100^(-1/6), by size (ties: class index)
    assert graphsha_quotas([160, 90, 196, 341, 196, 138, 87], 100).tolist() == [34, 7, 158, 341, 73, 15, 3]
    mu = 100 ** (-1 / 6)
    assert [int(341 * mu ** i) for i in range(7)] == [341, 158, 73, 34, 15, 7, 3]
    with pytest.raises(HgimbError, match="no training node under the long-tail-remove rule"):
        graphsha_quotas([10, 10, 10], 100)


def _graph_task():
    """Class 0: nodes 0-3 (a hub 0 with spokes 1-3), class 1: nodes 4-9 (4-5 a pair, 6-9 a
    chain 6-7-8-9), val = {10}, test = {11}; 10 and 11 hang on 7 and 1."""
    edges = [(0, 1), (0, 2), (0, 3), (4, 5), (6, 7), (7, 8), (8, 9), (7, 10), (1, 11)]
    ei = torch.tensor(edges).t()
    ei = torch.cat([ei, ei.flip(0)], 1)
    data = HeteroData()
    data["paper"].num_nodes = 12
    data["paper"].x = torch.eye(12)
    data["paper", "cites", "paper"].edge_index = ei
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0])
    split = {"train": torch.arange(10), "val": torch.tensor([10]), "test": torch.tensor([11])}
    return Task(name="toy", kind="node", class_names=["a", "b"], y=y, split=split, data=data, target_types=["paper"])


def test_remove_low_degree_removes_nodes_and_their_edges():
    task = _graph_task()
    before = task.data["paper", "cites", "paper"].edge_index.clone()
    # class 1 (6 nodes) is the largest and keeps all; class 0 keeps int(6 / 3) = 2 of 4 with
    # rho = 3: the two lowest-degree nodes go (2 and 3: degree 1; 1 has degree 2 through the test node)
    new = make_split(task, split="official", imbalance_ratio=3, imbalance_type="long-tail-remove")
    assert new.split["train"].tolist() == [0, 1, 4, 5, 6, 7, 8, 9]
    assert torch.equal(new.split["val"], task.split["val"]) and torch.equal(new.split["test"], task.split["test"])
    ei = new.data["paper", "cites", "paper"].edge_index
    assert not torch.isin(ei, torch.tensor([2, 3])).any()  # removed nodes lost every edge
    assert ei.size(1) == before.size(1) - 4 and new.meta["removed_nodes"] == 2
    assert torch.equal(task.data["paper", "cites", "paper"].edge_index, before)  # the input task is untouched
    assert new.data["paper"].x is task.data["paper"].x  # features shared, not copied


def test_remove_low_degree_rounds_see_earlier_removals():
    """Removal happens in rounds: a node whose neighbour was removed in an earlier round has a
    lower degree in the next one (GraphSHA's 10 rounds)."""
    task = _graph_task()
    # rho = 6: class 0 keeps int(6 / 6) = 1 of 4. On the initial degrees (hub 0: 3, node 1: 2,
    # spokes 2, 3: 1) one round would keep the hub; after the spokes go in rounds 4 and 7 the hub
    # has degree 1 < node 1's 2, so the last round removes the hub and node 1 stays
    new = make_split(task, split="official", imbalance_ratio=6, imbalance_type="long-tail-remove")
    assert sorted(set(range(4)) & set(new.split["train"].tolist())) == [1]


def test_full_split_and_config_names():
    from hgimb.config import RunConfig

    task = _graph_task()
    task.split["train"] = torch.tensor([0, 4])
    new = make_split(task, split="full")
    assert new.split["train"].tolist() == list(range(10)) and new.meta["split_mode"] == "full"
    with pytest.raises(HgimbError, match="--split full keeps the official validation"):
        make_split(make_task([5, 5]), split="full")
    RunConfig(split="full", imbalance_type="long-tail-remove", scheduler="plateau", monitor="acc_f1").validate()
    with pytest.raises(HgimbError, match="--scheduler must be none or plateau"):
        RunConfig(scheduler="cosine").validate()


def test_cora_graphsha_split(data_root):
    task = _load_or_skip("cora", data_root)
    new = make_split(task, split="full", imbalance_ratio=100, imbalance_type="long-tail-remove")
    assert new.meta["train_class_counts_before"] == [160, 90, 196, 341, 196, 138, 87]  # 1,208 training nodes
    assert counts(new, "train") == [34, 7, 158, 341, 73, 15, 3]
    assert new.meta["removed_nodes"] == 1208 - 631
    assert torch.equal(new.split["test"], task.split["test"]) and torch.equal(new.split["val"], task.split["val"])
