"""How items reach the model: the whole graph at once, or batches of graphs.

A batching strategy turns an epoch's item indices into steps (``chunks``), gives the
embeddings of a chunk's items in order (``encode``), and computes logits for any items in
eval mode (``logits``). The trainer is the same for every strategy; adding mini-batch
neighbour sampling is one more strategy in ``BATCHING``.
"""
from __future__ import annotations

from typing import List

import torch

from ..registry import Registry

BATCHING: Registry = Registry("batching")


@BATCHING.register("full-graph")
class FullGraph:
    """Node tasks, full batch: one forward over the whole graph per step."""

    def __init__(self, task, cfg, device):
        self.data = task.data.to(device)
        self.device = device

    def chunks(self, idx: torch.Tensor) -> List[torch.Tensor]:
        return [idx]

    def encode(self, model, chunk: torch.Tensor) -> torch.Tensor:
        return model.encode(self.data)[chunk.to(self.device)]

    @torch.no_grad()
    def logits(self, model, items: torch.Tensor) -> torch.Tensor:
        return model(self.data)[items.to(self.device)]


@BATCHING.register("graph-batches")
class GraphBatches:
    """Graph tasks: mini-batches of graphs (PyG ``Batch``), in the order the epoch asks for."""

    def __init__(self, task, cfg, device):
        self.graphs = task.graphs
        self.batch_size = cfg.batch_size or 64
        self.device = device

    def chunks(self, idx: torch.Tensor) -> List[torch.Tensor]:
        return list(torch.split(idx, self.batch_size))

    def _batch(self, chunk: torch.Tensor):
        from torch_geometric.data import Batch

        return Batch.from_data_list([self.graphs[i] for i in chunk.tolist()]).to(self.device)

    def encode(self, model, chunk: torch.Tensor) -> torch.Tensor:
        return model.encode(self._batch(chunk))

    @torch.no_grad()
    def logits(self, model, items: torch.Tensor) -> torch.Tensor:
        # Eval batches are fixed-size and in index order; models use running statistics in
        # eval mode, so outputs do not depend on which graphs share a batch.
        parts = [model(self._batch(chunk)) for chunk in torch.split(items, max(self.batch_size, 256))]
        if not parts:
            return torch.empty(0, 0, device=self.device)
        return torch.cat(parts)


def batching_for(task, cfg) -> str:
    if task.kind == "graph":
        return "graph-batches"
    if cfg.batch_size:
        if "neighbor-sampling" not in BATCHING:
            from ..errors import HgimbError

            raise HgimbError("--batch-size on node tasks (mini-batch neighbour sampling) is not implemented yet; "
                             "drop --batch-size to train full-batch")
        return "neighbor-sampling"
    return "full-graph"
