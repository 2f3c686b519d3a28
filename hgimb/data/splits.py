"""Train/val/test splits and long-tailed training sets: pure functions ``Task -> Task``.

Every function returns a new Task (``task.with_split``; the graph is shared, not copied), is
deterministic given ``seed`` and never looks at val/test labels to shape the training set.

How items are drawn
-------------------
* Stratification is per class: each class's labelled items are shuffled with
  ``numpy.random.default_rng(seed)`` and cut into consecutive parts whose sizes are the rounded
  fractions of that class's size (so every part holds each class within +-1 item of its exact
  share). Where a class is large enough, every part with a positive fraction gets at least one
  item of it (priority train, then test, then val); the training part never loses its last item.
  This is hand-written rather than ``sklearn.model_selection.train_test_split(stratify=...)``
  because sklearn rejects classes with fewer than two items and may leave a small class out of
  val/test altogether -- exactly the classes an imbalance study cares about.
* Imbalance (``imbalance_ratio`` > 1) only ever *removes* training items: val and test are left
  as they were, and removed items are simply unused. Which items a class keeps is a uniform
  random choice from a second, independent stream ``default_rng([seed, 1])``: for a fixed seed
  the training set at a larger ratio is a subset of the one at a smaller ratio.
  - ``long-tail``: classes sorted by training count (largest first, ties by class index); the
    class at rank ``i`` of ``C`` keeps ``round(n_max * rho ** (-i / (C - 1)))`` (at least 1).
  - ``step``: the ``C // 2`` last classes of that order are the minority and keep
    ``round(n_max / rho)`` (at least 1); the majority keep all their items.
  A class that already has fewer items than its quota keeps what it has.
* ``long-tail-remove`` is GraphSHA's construction (Li et al., IJCAI 2023; their
  ``make_longtailed_data_remove``), deterministic: the class at rank ``i`` keeps
  ``floor(min(n_max * mu ** i, n_i))`` with ``mu = rho ** (-1 / (C - 1))``; a class's surplus is
  removed in 10 rounds (1 for the largest class), each taking the ``r / 10`` share of it with the
  lowest degree in the graph left by every removal so far; removed nodes leave the training set
  *and the graph* (all their edges go; they stay as isolated, unlabelled-for-training nodes).
  Validation and test nodes stay. Ties between equal degrees go to nodes already removed, then
  to the lower node index (the reference's ``torch.topk`` leaves tie order unspecified).
* ``full`` split (Planetoid's ``split='full'``): the loader's validation and test items, and every
  other labelled item trains.
* ``kfold_splits`` uses ``sklearn.model_selection.StratifiedKFold`` for the test folds.
"""
from __future__ import annotations

import copy
import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import HgimbError
from .task import SPLITS, Task

SPLIT_MODES = ("official", "full", "stratified", "per-class")
IMBALANCE_TYPES = ("long-tail", "step", "long-tail-remove")
GRAPHSHA_ROUNDS = 10  # removal rounds per class in GraphSHA's make_longtailed_data_remove


# ---------------------------------------------------------------------------- helpers
def _round_half_up(x: np.ndarray) -> np.ndarray:
    # np.round rounds half to even (2.5 -> 2); counts read better rounded half up.
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def _quotas(n: int, fractions: Sequence[float], priority: Sequence[int]) -> np.ndarray:
    """Sizes of the parts of one class of ``n`` items: rounded fractions that sum to ``n``.

    The first part of ``priority`` with a positive fraction takes the remainder; each part with a
    positive fraction gets at least one item while ``n`` allows it, in ``priority`` order.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    active = [p for p in priority if fractions[p] > 0]
    q = np.zeros(len(fractions), dtype=np.int64)
    if n == 0 or not active:
        return q
    first, others = active[0], active[1:]
    for p in others:
        q[p] = _round_half_up(fractions[p] * n)
    minimum = np.zeros_like(q)
    minimum[active[: min(n, len(active))]] = 1
    q = np.maximum(q, minimum)
    q[first] = 0
    # Too many items handed to the other parts (rounding up, minimum bumps): take them back from
    # the part with the most slack, so that the first part keeps at least its minimum.
    while q.sum() > n - minimum[first]:
        slack = q - minimum
        slack[first] = -1
        q[int(np.argmax(slack))] -= 1
    q[first] = n - q.sum()
    return q


def _partition(items: np.ndarray, labels: np.ndarray, quotas: np.ndarray, rng) -> List[np.ndarray]:
    """Cut ``items`` into parts: part ``p`` holds ``quotas[c, p]`` random items of each class ``c``.

    Vectorised: one random permutation, a stable sort by class, and each item's rank within its
    class decides its part. Returned index arrays are sorted.
    """
    perm = rng.permutation(len(items))
    items, labels = items[perm], labels[perm]
    order = np.argsort(labels, kind="stable")
    items, labels = items[order], labels[order]
    counts = np.bincount(labels, minlength=quotas.shape[0])
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(items)) - starts[labels]
    bounds = np.concatenate([np.zeros((quotas.shape[0], 1), np.int64), np.cumsum(quotas, axis=1)], axis=1)
    parts = []
    for p in range(quotas.shape[1]):  # a loop over the (<= 3) parts, not over items
        keep = (rank >= bounds[labels, p]) & (rank < bounds[labels, p + 1])
        parts.append(np.sort(items[keep]))
    return parts


def _stratified(items: np.ndarray, y: np.ndarray, num_classes: int, fractions: Sequence[float],
                rng, priority: Sequence[int] = (0, 2, 1)) -> List[np.ndarray]:
    """Stratified split of ``items`` (labels ``y[items]``) into ``len(fractions)`` parts."""
    labels = y[items]
    counts = np.bincount(labels, minlength=num_classes)
    quotas = np.stack([_quotas(int(n), fractions, priority) for n in counts])  # loop over classes
    return _partition(items, labels, quotas, rng)


def _labelled(task: Task) -> np.ndarray:
    return np.flatnonzero(task.y.cpu().numpy() >= 0)


def _labels(task: Task) -> np.ndarray:
    return task.y.cpu().numpy().astype(np.int64)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise HgimbError(f"--seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_fraction(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise HgimbError(f"--{name} must be a number in (0, 1), got {value!r}") from None
    if not 0 < value < 1:
        raise HgimbError(f"--{name} must be in (0, 1), got {value}")
    return value


def _split_dict(parts: Sequence[np.ndarray]) -> Dict[str, torch.Tensor]:
    return {name: torch.as_tensor(idx, dtype=torch.long) for name, idx in zip(SPLITS, parts)}


# ---------------------------------------------------------------------------- splits
def stratified_split(task: Task, train_fraction: float = 0.8, test_fraction: float = 0.1,
                     seed: int = 0) -> Dict[str, torch.Tensor]:
    """Train/val/test indices over all labelled items; val gets ``1 - train - test``."""
    train_fraction = _check_fraction("train-fraction", train_fraction)
    test_fraction = _check_fraction("test-fraction", test_fraction)
    val_fraction = 1.0 - train_fraction - test_fraction
    if val_fraction <= 1e-9:
        raise HgimbError(
            f"--train-fraction {train_fraction} + --test-fraction {test_fraction} leave no validation "
            f"items; make their sum smaller than 1"
        )
    rng = np.random.default_rng(_check_seed(seed))
    parts = _stratified(_labelled(task), _labels(task), task.num_classes,
                        (train_fraction, val_fraction, test_fraction), rng)
    return _split_dict(parts)


def per_class_split(task: Task, per_class: int, train_fraction: float = 0.8, test_fraction: float = 0.1,
                    seed: int = 0) -> Dict[str, torch.Tensor]:
    """``per_class`` training items per class; the rest go to val/test in the ratio of their fractions.

    A class with fewer items keeps one for test and one for val where it can (a class of one item
    only trains).
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise HgimbError(f"--per-class must be a positive integer with --split per-class, got {per_class!r}")
    train_fraction = _check_fraction("train-fraction", train_fraction)
    test_fraction = _check_fraction("test-fraction", test_fraction)
    val_fraction = max(0.0, 1.0 - train_fraction - test_fraction)
    if val_fraction <= 1e-9:
        raise HgimbError(
            f"--train-fraction {train_fraction} + --test-fraction {test_fraction} leave no validation "
            f"share for --split per-class; make their sum smaller than 1"
        )
    rng = np.random.default_rng(_check_seed(seed))
    y, items = _labels(task), _labelled(task)
    counts = np.bincount(y[items], minlength=task.num_classes)
    reserve = np.minimum(2, np.maximum(counts - 1, 0))  # one val + one test item where possible
    train_quota = np.minimum(per_class, counts - reserve)
    rest_fractions = (val_fraction / (val_fraction + test_fraction), test_fraction / (val_fraction + test_fraction))
    quotas = np.zeros((task.num_classes, 3), dtype=np.int64)
    quotas[:, 0] = train_quota
    for c in range(task.num_classes):  # loop over classes only
        quotas[c, 1:] = _quotas(int(counts[c] - train_quota[c]), rest_fractions, priority=(1, 0))
    return _split_dict(_partition(items, y[items], quotas, rng))


def imbalance_quotas(counts: Sequence[int], imbalance_ratio: float, imbalance_type: str = "long-tail") -> np.ndarray:
    """How many training items each class keeps (see the module docstring for the rules)."""
    counts = np.asarray(counts, dtype=np.int64)
    num_classes = len(counts)
    # rank 0 = largest class; ties broken by class index (np.lexsort: last key is primary)
    order = np.lexsort((np.arange(num_classes), -counts))
    n_max = int(counts.max()) if num_classes else 0
    quota = np.empty(num_classes, dtype=np.int64)
    if imbalance_type == "long-tail":
        ranks = np.arange(num_classes)
        target = n_max * float(imbalance_ratio) ** (-ranks / max(num_classes - 1, 1))
        quota[order] = np.maximum(1, _round_half_up(target))
    elif imbalance_type == "step":
        num_minority = num_classes // 2
        quota[order] = n_max
        quota[order[num_classes - num_minority:]] = max(1, int(_round_half_up(n_max / float(imbalance_ratio))))
    else:
        raise HgimbError(f"--imbalance-type must be one of {', '.join(IMBALANCE_TYPES)}, got '{imbalance_type}'")
    return np.minimum(quota, counts)


def apply_imbalance(task: Task, imbalance_ratio: float, imbalance_type: str = "long-tail", seed: int = 0) -> Task:
    """Subsample the training split of ``task`` into a long-tailed / step profile (val/test untouched)."""
    try:
        ratio = float(imbalance_ratio)
    except (TypeError, ValueError):
        raise HgimbError(f"--imbalance-ratio must be a number >= 1, got {imbalance_ratio!r}") from None
    if not ratio >= 1 or math.isinf(ratio):  # also rejects NaN
        raise HgimbError(f"--imbalance-ratio must be a finite number >= 1, got {imbalance_ratio}")
    if imbalance_type not in IMBALANCE_TYPES:
        raise HgimbError(f"--imbalance-type must be one of {', '.join(IMBALANCE_TYPES)}, got '{imbalance_type}'")
    seed = _check_seed(seed)
    train = task.split["train"].cpu().numpy().astype(np.int64)
    y = _labels(task)
    counts = np.bincount(y[train], minlength=task.num_classes)
    meta = dict(imbalance_ratio=ratio, imbalance_type=imbalance_type,
                train_class_counts_before=counts.tolist())
    if ratio == 1:
        return task.with_split(dict(task.split), **meta)
    if imbalance_type == "long-tail-remove":
        return remove_low_degree(task, ratio, **meta)
    quotas = imbalance_quotas(counts, ratio, imbalance_type)
    rng = np.random.default_rng([seed, 1])  # independent of the split's stream (nested subsets)
    kept = _partition(train, y[train], quotas[:, None], rng)[0]
    return task.with_split({**task.split, "train": kept}, **meta)


def graphsha_quotas(counts: Sequence[int], imbalance_ratio: float) -> np.ndarray:
    """Training nodes each class keeps under GraphSHA's long-tail rule (see the module docstring)."""
    counts = np.asarray(counts, dtype=np.int64)
    num_classes = len(counts)
    order = np.lexsort((np.arange(num_classes), -counts))
    mu = np.power(1.0 / imbalance_ratio, 1.0 / max(num_classes - 1, 1))  # the reference's arithmetic
    kept = np.floor(np.minimum(counts[order[0]] * np.power(mu, np.arange(num_classes)), counts[order]))
    if (kept < 1).any():
        raise HgimbError(f"--imbalance-ratio {imbalance_ratio} leaves a class with no training node under the "
                         f"long-tail-remove rule (largest class {int(counts.max())} nodes); lower the ratio")
    quota = np.empty(num_classes, dtype=np.int64)
    quota[order] = kept.astype(np.int64)
    return quota


def _target_edges(task: Task):
    """Every relation's edges as item indices (``-1`` where an end is not a target node)."""
    offsets = task.type_offsets()
    out = []
    for edge_type in task.data.edge_types:
        src, _, dst = edge_type
        ei = task.data[edge_type].edge_index.cpu()
        s = ei[0] + offsets[src] if src in offsets else torch.full_like(ei[0], -1)
        d = ei[1] + offsets[dst] if dst in offsets else torch.full_like(ei[1], -1)
        out.append((edge_type, s.numpy(), d.numpy()))
    return out


def remove_low_degree(task: Task, ratio: float, **meta) -> Task:
    """GraphSHA's long-tailed training set: remove the lowest-degree training nodes of each class
    and all their edges (module docstring). Returns a Task with a new graph (node features and
    untouched relations shared) and the training split without the removed nodes."""
    if task.kind != "node" or task.data is None:
        raise HgimbError(f"--imbalance-type long-tail-remove removes nodes from a graph; '{task.name}' is a "
                         f"{task.kind} task: use --imbalance-type long-tail")
    y = _labels(task)
    train = task.split["train"].cpu().numpy().astype(np.int64)
    counts = np.bincount(y[train], minlength=task.num_classes)
    quota = graphsha_quotas(counts, ratio)
    surplus = counts - quota
    order = np.lexsort((np.arange(task.num_classes), -counts))
    edges = _target_edges(task)
    removed = np.zeros(task.num_items, dtype=bool)
    for rank, c in enumerate(order):  # loops over classes and rounds; each round is vectorised
        members = np.sort(train[y[train] == c])
        rounds = 1 if rank == 0 else GRAPHSHA_ROUNDS
        for r in range(1, rounds + 1):
            degree = np.zeros(task.num_items, dtype=np.int64)
            for _, s, d in edges:  # in-degree over edges whose ends are both still in the graph
                keep = (d >= 0) & ~removed[d] & ((s < 0) | ~removed[np.maximum(s, 0)])
                degree += np.bincount(d[keep], minlength=task.num_items)
            take = (r * int(surplus[c])) // rounds
            # lowest degree first; ties: already removed, then lower index (lexsort: last key primary)
            rank_in_class = np.lexsort((members, ~removed[members], degree[members]))
            removed[members] = False
            removed[members[rank_in_class[:take]]] = True
    data = copy.copy(task.data)  # shallow: stores copied, tensors shared
    kept_edges = 0
    for edge_type, s, d in edges:
        keep = ~(((s >= 0) & removed[np.maximum(s, 0)]) | ((d >= 0) & removed[np.maximum(d, 0)]))
        if not keep.all():
            data[edge_type].edge_index = task.data[edge_type].edge_index[:, torch.as_tensor(keep)]
        kept_edges += int(keep.sum())
    new_train = train[~removed[train]]
    new = task.with_split({**task.split, "train": new_train}, **meta, removed_nodes=int(removed.sum()),
                          edges_kept=kept_edges)
    new.data = data
    return new


def make_split(task: Task, *, split: str = "official", val_fraction: float = 0.2, train_fraction: float = 0.8,
               test_fraction: float = 0.1, per_class: Optional[int] = None, imbalance_ratio: float = 1.0,
               imbalance_type: str = "long-tail", seed: int = 0) -> Task:
    """The split the pipeline uses (arguments mirror the RunConfig fields of the same names).

    ``official``: the loader's split; a missing/empty val gets a stratified ``val_fraction`` of the
    training items; a task without any split falls back to ``stratified``. ``stratified``:
    ``train_fraction`` / rest / ``test_fraction`` of all labelled items. ``per-class``:
    ``per_class`` training items per class. Then the imbalance profile is applied to train, and the
    result is validated (HgimbError e.g. when a class has no training item).
    """
    if split not in SPLIT_MODES:
        raise HgimbError(f"--split must be one of {', '.join(SPLIT_MODES)}, got '{split}'")
    seed = _check_seed(seed)
    if split == "full":
        missing = [p for p in ("val", "test") if p not in task.split or not task.split[p].numel()]
        if missing:
            raise HgimbError(f"--split full keeps the official validation and test items, but dataset '{task.name}' "
                             f"has no official '{missing[0]}' split; use --split stratified")
        held = torch.cat([task.split["val"], task.split["test"]])
        free = torch.ones(task.num_items, dtype=torch.bool)
        free[held] = False
        train = torch.nonzero(free & (task.y >= 0)).view(-1)
        new = task.with_split({"train": train, "val": task.split["val"], "test": task.split["test"]},
                              split_mode="full", official_split=True)
    elif split == "official" and task.split:
        missing = [p for p in ("train", "test") if p not in task.split]
        if missing:
            raise HgimbError(
                f"dataset '{task.name}' has an official split without '{missing[0]}' items; use --split stratified"
            )
        parts = {p: task.split[p] for p in ("train", "test")}
        val = task.split.get("val")
        if val is not None and val.numel():
            parts["val"] = val
            mode = "official"
        else:
            val_fraction = _check_fraction("val-fraction", val_fraction)
            rng = np.random.default_rng(seed)
            train = task.split["train"].cpu().numpy().astype(np.int64)
            y = _labels(task)
            if train.size and (y[train] < 0).any():
                raise HgimbError(f"official training split of '{task.name}' contains unlabelled items")
            new_train, new_val = _stratified(train, y, task.num_classes, (1 - val_fraction, val_fraction), rng,
                                             priority=(0, 1))
            parts["train"], parts["val"] = torch.as_tensor(new_train), torch.as_tensor(new_val)
            mode = "official+val"
        new = task.with_split(parts, split_mode=mode, official_split=True)
    elif split == "per-class":
        new = task.with_split(per_class_split(task, per_class, train_fraction, test_fraction, seed),
                              split_mode="per-class", official_split=False)
    else:
        mode = "stratified" if split == "stratified" else "stratified (no official split)"
        new = task.with_split(stratified_split(task, train_fraction, test_fraction, seed),
                              split_mode=mode, official_split=False)
    new.meta["split_seed"] = seed
    return apply_imbalance(new, imbalance_ratio, imbalance_type, seed).validate()


def kfold_splits(task: Task, folds: int, seed: int = 0, val_fraction: float = 0.1) -> List[Task]:
    """Stratified K-fold over all labelled items: fold ``k`` is test, a stratified ``val_fraction``
    of the rest is val. Every labelled item is a test item in exactly one fold."""
    from sklearn.model_selection import StratifiedKFold

    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise HgimbError(f"--folds must be an integer >= 2 for cross-validation, got {folds!r}")
    seed = _check_seed(seed)
    val_fraction = _check_fraction("val-fraction", val_fraction)
    y, items = _labels(task), _labelled(task)
    counts = np.bincount(y[items], minlength=task.num_classes)
    smallest = int(np.argmin(counts))
    if folds > counts[smallest]:
        raise HgimbError(
            f"--folds {folds} is more than the {int(counts[smallest])} labelled item(s) of the smallest class "
            f"'{task.class_names[smallest]}' of '{task.name}'; use --folds {max(2, int(counts[smallest]))} or fewer"
        )
    splitter = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=seed)
    tasks = []
    for k, (rest_pos, test_pos) in enumerate(splitter.split(np.zeros(len(items)), y[items])):
        rng = np.random.default_rng([seed, 2, k])
        train, val = _stratified(items[rest_pos], y, task.num_classes, (1 - val_fraction, val_fraction), rng,
                                 priority=(0, 1))
        parts = _split_dict([train, val, np.sort(items[test_pos])])
        tasks.append(task.with_split(parts, split_mode=f"kfold {k + 1}/{folds}", fold=k, folds=int(folds),
                                     official_split=False, split_seed=seed).validate())
    return tasks


def class_counts_table(task: Task) -> Dict[str, List[int]]:
    """Per-class counts of each split part, plus labelled items in no part (``unused``)."""
    y = _labels(task)
    table = {}
    used = np.zeros(task.num_items, dtype=bool)
    for part in SPLITS:
        idx = task.split.get(part, torch.empty(0, dtype=torch.long)).cpu().numpy()
        used[idx] = True
        table[part] = np.bincount(y[idx], minlength=task.num_classes).tolist()
    unused = (~used) & (y >= 0)
    table["unused"] = np.bincount(y[unused], minlength=task.num_classes).tolist()
    return table
