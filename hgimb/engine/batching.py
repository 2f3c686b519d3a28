"""How items reach the model: the whole graph at once, or batches of graphs.

A batching strategy turns an epoch's item indices into steps (``chunks``), gives the
embeddings of a chunk's items in order (``encode``), and computes logits for any items in
eval mode (``logits``). The trainer is the same for every strategy; mini-batch neighbour
sampling (``--batch-size`` on node tasks) is the ``neighbor-sampling`` strategy. A strategy
knows models only through the model contract (:mod:`hgimb.models.base`): ``encode``, ``forward``
and, for neighbour sampling, ``supports_neighbor_sampling`` / ``num_hops`` (for graph batches,
``graph_attributes``: the attributes a batch is collated from).
"""
from __future__ import annotations

from typing import List

import torch

from ..registry import Registry

BATCHING: Registry = Registry("batching")


@BATCHING.register("full-graph")
class FullGraph:
    """Node tasks, full batch: one forward over the whole graph per step. The one strategy
    that takes a remedy's input-level graph augmentation (``augment`` hook): the step then
    encodes the augmented graph and returns the chunk's rows followed by the synthetic nodes'."""

    def __init__(self, task, cfg, device):
        self.data = task.data.to(device)
        self.device = device

    def augmentable_graph(self):
        return self.data

    def encode_augmented(self, model, chunk: torch.Tensor, aug) -> torch.Tensor:
        if aug.hidden is not None:  # synthetic nodes made before the model's output layer
            h, h_new = model.encode_extended(aug.data, aug.hidden)
            return torch.cat([h[chunk.to(self.device)], h_new])
        h = model.encode(aug.data)
        if aug.on_encoded is not None:
            aug.on_encoded(h.detach())
        rows = chunk.to(self.device)
        if aug.real_rows is not None:
            rows = aug.real_rows.to(self.device)[rows]
        return torch.cat([h[rows], h[aug.new_rows.to(self.device)]])

    def chunks(self, idx: torch.Tensor) -> List[torch.Tensor]:
        return [idx]

    def encode(self, model, chunk: torch.Tensor) -> torch.Tensor:
        return encode_rows(model, self.data, chunk.to(self.device))

    @torch.no_grad()
    def logits(self, model, items: torch.Tensor) -> torch.Tensor:
        return model.head(encode_rows(model, self.data, items.to(self.device)))


def encode_rows(model, data, rows: torch.Tensor) -> torch.Tensor:
    """The embeddings of the target ``rows``: the model's ``encode_rows`` when it has one (it may
    compute only what those rows read), else ``encode(data)[rows]``."""
    own = getattr(model, "encode_rows", None)
    return own(data, rows) if callable(own) else model.encode(data)[rows]


@BATCHING.register("graph-batches")
class GraphBatches:
    """Graph tasks: mini-batches of graphs (PyG ``Batch``), in the order the epoch asks for."""

    def __init__(self, task, cfg, device):
        self.graphs = task.graphs
        self.batch_size = cfg.batch_size or 64
        self.device = device
        self._views = {}  # declared attribute tuple -> the graphs restricted to those attributes

    def chunks(self, idx: torch.Tensor) -> List[torch.Tensor]:
        return list(torch.split(idx, self.batch_size))

    def _graphs_for(self, model) -> list:
        """The graphs as ``model`` reads them: restricted to its declared ``graph_attributes``
        (the model contract) so collation skips what it never reads, else whole."""
        keys = getattr(model, "graph_attributes", None)
        if keys is None:
            return self.graphs
        keys = tuple(keys)
        if keys not in self._views:  # built once per run: the tensors are shared, not copied
            from torch_geometric.data import Data

            self._views[keys] = [Data(**{k: g[k] for k in keys if k in g}, num_nodes=g.num_nodes)
                                 for g in self.graphs]
        return self._views[keys]

    def _batch(self, chunk: torch.Tensor, model):
        from torch_geometric.data import Batch

        graphs = self._graphs_for(model)
        return Batch.from_data_list([graphs[i] for i in chunk.tolist()]).to(self.device)

    def encode(self, model, chunk: torch.Tensor) -> torch.Tensor:
        return model.encode(self._batch(chunk, model))

    @torch.no_grad()
    def logits(self, model, items: torch.Tensor) -> torch.Tensor:
        # Eval batches are fixed-size and in index order; models use running statistics in
        # eval mode, so outputs do not depend on which graphs share a batch.
        parts = [model(self._batch(chunk, model)) for chunk in torch.split(items, max(self.batch_size, 256))]
        if not parts:
            return torch.empty(0, 0, device=self.device)
        return torch.cat(parts)


@BATCHING.register("neighbor-sampling")
class NeighborSampling:
    """Node tasks, mini-batches: ``batch_size`` seed items per step, each encoded on a sampled
    subgraph (``--fanout``: neighbours per node, relation and hop; -1 = all; see
    :mod:`hgimb.engine.sampling`).

    Training: ``chunks`` cuts the epoch's items (the remedy's ``train_index`` when it has one, so a
    class-balanced sampler picks the seeds) into consecutive batches; ``encode`` samples around a
    chunk's distinct items and returns one embedding per chunk entry, in order (repeats from
    over-sampling share their row, as in full-batch training). Loss and synthesis remedies then
    act on the chunk's embeddings as they do on the full batch's.

    Evaluation (``logits``) is deterministic and exact: full neighbourhoods (fanout -1 at every
    hop), in chunks of ``max(batch_size, 1024)`` items, so validation/test logits equal the
    full-graph model's and do not depend on how items are chunked or on any random state.
    Training draws from its own generator seeded by the run seed, so mini-batch and full-batch
    runs with one seed see the same epoch order.
    """

    def __init__(self, task, cfg, device):
        from .sampling import make_sampler, parse_fanout

        self.task, self.device = task, device
        self.batch_size = int(cfg.batch_size)
        self.eval_batch_size = max(self.batch_size, 1024)
        self.fanout_text = str(cfg.fanout)
        self.fanout = parse_fanout(cfg.fanout)
        self.sampler = make_sampler(task.data)
        # own stream, so sampling does not shift the trainer's draws (epoch order, synthesis)
        self.generator = torch.Generator().manual_seed(10007 * int(cfg.seed) + 1)
        self.target_types = list(task.target_types)
        offsets = task.type_offsets()
        self._starts = torch.tensor([offsets[t] for t in self.target_types], dtype=torch.long)
        self._hops: dict = {}

    def _model_fanout(self, model, full: bool):
        from ..models.base import check_neighbor_sampling
        from .sampling import fanout_for

        check_neighbor_sampling(model)  # the model's declaration (hgimb.models.base)
        key = id(model)
        if key not in self._hops:
            self._hops[key] = fanout_for(model, self.fanout, self.fanout_text)
        fanout = self._hops[key]
        return [-1] * len(fanout) if full else fanout

    def _subgraph(self, items: torch.Tensor, fanout, generator):
        """Sampled subgraph whose seeds are ``items`` (distinct, ascending: grouped by target
        type in ``target_types`` order, which is the order ``model.encode`` returns them in)."""
        kind = torch.bucketize(items, self._starts, right=True) - 1
        seeds = {t: items[kind == i] - self._starts[i] for i, t in enumerate(self.target_types)}
        return self.sampler.sample(seeds, fanout, generator).to(self.device)

    def chunks(self, idx: torch.Tensor) -> List[torch.Tensor]:
        return list(torch.split(idx, self.batch_size))

    def encode(self, model, chunk: torch.Tensor) -> torch.Tensor:
        fanout = self._model_fanout(model, full=False)
        items, inverse = torch.unique(chunk.cpu(), return_inverse=True)
        h = model.encode(self._subgraph(items, fanout, self.generator))
        return h[inverse.to(h.device)]

    @torch.no_grad()
    def logits(self, model, items: torch.Tensor) -> torch.Tensor:
        fanout = self._model_fanout(model, full=True)
        parts = []
        for chunk in torch.split(items.cpu(), self.eval_batch_size):
            distinct, inverse = torch.unique(chunk, return_inverse=True)
            out = model(self._subgraph(distinct, fanout, None))
            parts.append(out[inverse.to(out.device)])
        if not parts:
            return torch.empty(0, self.task.num_classes, device=self.device)
        return torch.cat(parts)


def batching_for(task, cfg) -> str:
    if task.kind == "graph":
        return "graph-batches"
    if cfg.batch_size:
        return "neighbor-sampling"
    return "full-graph"
