"""The Task: the one object that crosses every boundary (see docs/architecture.md, "The flow").

Items are what gets classified: the nodes of the labelled node type(s) of a node task, in the
order of ``target_types`` (all nodes of the first type, then all of the second, ...), or the
graphs of a graph task. ``y[i]`` is the class of item ``i`` (``-1`` = unlabelled) and ``split``
maps ``train``/``val``/``test`` to item indices.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..errors import HgimbError

SPLITS = ("train", "val", "test")


@dataclass
class Task:
    name: str
    kind: str  # "node" or "graph"
    class_names: List[str]
    y: torch.Tensor  # long, one entry per item, -1 = unlabelled
    split: Dict[str, torch.Tensor] = field(default_factory=dict)
    data: Any = None  # torch_geometric.data.HeteroData for node tasks
    target_types: List[str] = field(default_factory=list)  # node types carrying labels, item order
    graphs: Optional[list] = None  # list[torch_geometric.data.Data] for graph tasks
    item_ids: Optional[np.ndarray] = None  # ids written to predictions.csv (default: item index)
    meta: Dict[str, Any] = field(default_factory=dict)  # loader facts (source path, raw target, ...)

    # ------------------------------------------------------------------ basic facts
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_items(self) -> int:
        return int(self.y.numel())

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 2

    @property
    def target(self) -> str:
        """The (first) labelled node type, or 'graph'."""
        return self.target_types[0] if self.target_types else "graph"

    def type_offsets(self) -> Dict[str, int]:
        """Item index of the first node of each target type (node tasks)."""
        offsets, start = {}, 0
        for t in self.target_types:
            offsets[t] = start
            start += int(self.data[t].num_nodes)
        return offsets

    def item_type(self) -> torch.Tensor:
        """For each item, the index of its node type in ``target_types`` (all 0 for graph tasks)."""
        if self.kind != "node" or len(self.target_types) <= 1:
            return torch.zeros(self.num_items, dtype=torch.long)
        sizes = [int(self.data[t].num_nodes) for t in self.target_types]
        return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))

    def ids(self) -> np.ndarray:
        return self.item_ids if self.item_ids is not None else np.arange(self.num_items)

    def class_counts(self, part: str = "train") -> torch.Tensor:
        idx = self.split[part]
        return torch.bincount(self.y[idx], minlength=self.num_classes)

    def train_class_counts(self) -> torch.Tensor:
        return self.class_counts("train")

    def with_split(self, split: Dict[str, torch.Tensor], **meta) -> "Task":
        """A shallow copy with new split indices (graphs/data are shared, not copied)."""
        new = copy.copy(self)
        new.split = {k: torch.as_tensor(v, dtype=torch.long) for k, v in split.items()}
        new.meta = {**self.meta, **meta}
        return new

    # ------------------------------------------------------------------ validation
    def validate(self) -> "Task":
        """Check the invariants every consumer relies on; raise HgimbError with the reason."""
        if self.kind not in ("node", "graph"):
            raise HgimbError(f"task kind must be 'node' or 'graph', got '{self.kind}'")
        if self.num_classes < 2:
            raise HgimbError(f"dataset '{self.name}' has {self.num_classes} class(es); need at least 2")
        for part in SPLITS:
            if part not in self.split:
                raise HgimbError(f"dataset '{self.name}' has no '{part}' split")
            idx = self.split[part]
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_items):
                raise HgimbError(f"'{part}' split of '{self.name}' indexes outside 0..{self.num_items - 1}")
            if idx.numel() and bool((self.y[idx] < 0).any()):
                raise HgimbError(f"'{part}' split of '{self.name}' contains unlabelled items")
        seen = torch.zeros(self.num_items, dtype=torch.bool)
        for part in SPLITS:
            if bool(seen[self.split[part]].any()):
                raise HgimbError(f"splits of '{self.name}' overlap ('{part}' shares items with an earlier split)")
            seen[self.split[part]] = True
        counts = self.train_class_counts()
        empty = [self.class_names[c] for c in range(self.num_classes) if int(counts[c]) == 0]
        if empty:
            if float(self.meta.get("imbalance_ratio", 1) or 1) > 1:
                advice = "lower --imbalance-ratio or use a larger training split"
            elif self.meta.get("official_split"):
                advice = "the official training labels have none: add labelled examples, or use --split stratified"
            else:
                advice = "the dataset has too few labelled examples of it for this split: add labelled examples or raise --train-fraction"
            raise HgimbError(
                f"class(es) {', '.join(repr(e) for e in empty)} of '{self.name}' have no training "
                f"samples (train counts {counts.tolist()}); {advice}"
            )
        return self

    def summary(self) -> str:
        counts = {p: self.class_counts(p).tolist() for p in SPLITS if p in self.split}
        return f"{self.name}: {self.kind} task, {self.num_items} items, {self.num_classes} classes, class counts {counts}"
