"""Seconds per epoch of RGCN implementations (and hgimb's GAT) on real HGB graphs.

One epoch = one training step (forward, cross-entropy on the training labels, backward, Adam)
plus one evaluation forward pass; the median over ``--epochs`` epochs after ``--warmup``
warm-up epochs. All RGCN options share the same model around the convolution — learnable
embeddings (HeteroInput) for featureless types, a linear projection for featured ones,
``--layers`` layers of width ``--hidden``, ReLU, dropout 0.5, a linear head on the target type
— and differ only in the convolution (and the dropout kernel where noted)::

    HGIMB_DATA=<data root> .venv/bin/python scripts/bench_rgcn_options.py [--threads 2]

Epochs of the different options are interleaved (round robin), so that background load on a
shared machine hits all of them alike. Prints a markdown table: median and fastest wall-clock
epoch, and the median CPU time per epoch (process time, summed over threads). On a loaded
machine (load average above the core count) wall times with 2 threads are dominated by
threads waiting for each other; ``--threads 1`` and the CPU column then compare fairly.
Takes a few minutes on 2 cores (the rows with PyG's RGCNConv and ``F.dropout`` are slow).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn.inits import glorot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hgimb.data import load_dataset  # noqa: E402
from hgimb.models import ModelConfig, build_model  # noqa: E402
from hgimb.models.base import GraphModel, HeteroInput  # noqa: E402
from hgimb.models.sparse.csr import FixedAdjacency, edge_norm  # noqa: E402
from hgimb.models.sparse.dense import dropout as fast_dropout  # noqa: E402


class Baseline(GraphModel):
    """The shared skeleton; subclasses implement ``conv(layer, x_dict) -> x_dict`` over all types."""

    def __init__(self, data, target, num_classes, hidden, layers, fast_drop):
        super().__init__(hidden, num_classes)
        self.data, self.target, self.layers, self.hidden = data, target, layers, hidden
        self.node_types, self.edge_types = list(data.node_types), [tuple(e) for e in data.edge_types]
        self.num = {t: int(data[t].num_nodes) for t in self.node_types}
        self.input = HeteroInput(data, hidden)
        self.drop = fast_dropout if fast_drop else (lambda x, p, training: F.dropout(x, p, training))

    def encode(self, data):
        x = self.input(data)
        for layer in range(self.layers):
            x = self.conv(layer, x)
            x = {t: self.drop(torch.relu(h), 0.5, self.training) for t, h in x.items()}
        return x[self.target]


class PygGlobal(Baseline):
    """PyG RGCNConv(aggr='mean') on one global node index (root weight shared by all types)."""

    def __init__(self, *args):
        super().__init__(*args)
        from torch_geometric.nn import RGCNConv

        self.convs = nn.ModuleList(RGCNConv(self.hidden, self.hidden, len(self.edge_types), aggr="mean")
                                   for _ in range(self.layers))
        offsets, start = {}, 0
        for t in self.node_types:
            offsets[t] = start
            start += self.num[t]
        self.offsets = offsets
        self.edge_index = torch.cat([self.data[et].edge_index + torch.tensor([[offsets[et[0]]], [offsets[et[2]]]])
                                     for et in self.edge_types], 1)
        self.edge_type = torch.cat([torch.full((self.data[et].edge_index.size(1),), r)
                                    for r, et in enumerate(self.edge_types)])

    def conv(self, layer, x):
        out = self.convs[layer](torch.cat([x[t] for t in self.node_types]), self.edge_index, self.edge_type)
        return {t: out[self.offsets[t]: self.offsets[t] + self.num[t]] for t in self.node_types}


def torch_csr(csr):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(csr.indptr, csr.indices, csr.values, csr.shape)


class _TorchCSRSpMM(torch.autograd.Function):
    """Cached-transpose backward, but torch's own sparse CSR kernel (the intermediate step)."""

    @staticmethod
    def forward(ctx, x, matrix, transpose):
        ctx.transpose = transpose
        return torch.sparse.mm(matrix, x)

    @staticmethod
    def backward(ctx, grad):
        return torch.sparse.mm(ctx.transpose, grad.contiguous()), None, None


class PerRelation(Baseline):
    """Per relation ``A_r (H W_r)`` with ``A_r`` as: ``kernel="torch"`` a torch sparse CSR tensor
    and plain ``torch.sparse.mm`` (autograd transposes A in every backward); ``"torch-cached"``
    the same kernel in an autograd Function with a cached transpose; ``"hgimb"``
    :class:`FixedAdjacency` (cached transpose, embedding_bag kernel)."""

    def __init__(self, *args, kernel="hgimb"):
        super().__init__(*args)
        self.kernel = kernel
        R, T, H = len(self.edge_types), len(self.node_types), self.hidden
        self.weight = nn.ParameterList(nn.Parameter(torch.empty(R, H, H)) for _ in range(self.layers))
        self.root = nn.ParameterList(nn.Parameter(torch.empty(T, H, H)) for _ in range(self.layers))
        self.bias = nn.ParameterList(nn.Parameter(torch.zeros(T, H)) for _ in range(self.layers))
        for p in list(self.weight) + list(self.root):
            glorot(p)
        self.adj = [FixedAdjacency.from_edge_index(self.data[et].edge_index, self.num[et[0]], self.num[et[2]])
                    for et in self.edge_types]
        self.torch_adj = [(torch_csr(a.matrix), torch_csr(a.transpose)) for a in self.adj]

    def conv(self, layer, x):
        out = {t: torch.addmm(self.bias[layer][i], x[t], self.root[layer][i]) for i, t in enumerate(self.node_types)}
        for r, et in enumerate(self.edge_types):
            h = x[et[0]] @ self.weight[layer][r]
            if self.kernel == "torch":
                msg = torch.sparse.mm(self.torch_adj[r][0], h)
            elif self.kernel == "torch-cached":
                msg = _TorchCSRSpMM.apply(h, *self.torch_adj[r])
            else:
                msg = self.adj[r] @ h
            out[et[2]] = out[et[2]] + msg
        return out


class Stacked(PerRelation):
    """All relations and root terms fused: per source type one product ``H_t [W_root | W_r ...]``,
    concatenated, then ONE product with a stacked ``[N, sum_t N_t (1 + R_t)]`` adjacency."""

    def __init__(self, *args):
        super().__init__(*args)
        self.out_rel = {t: [r for r, et in enumerate(self.edge_types) if et[0] == t] for t in self.node_types}
        col_off, row_off, c, o = {}, {}, 0, 0
        for t in self.node_types:
            col_off[t], row_off[t] = c, o
            c += self.num[t] * (1 + len(self.out_rel[t]))
            o += self.num[t]
        rows, cols, vals = [], [], []
        for t in self.node_types:
            ar = torch.arange(self.num[t])
            rows.append(row_off[t] + ar)
            cols.append(col_off[t] + ar * (1 + len(self.out_rel[t])))
            vals.append(torch.ones(self.num[t]))
        for r, (s, _, d) in enumerate(self.edge_types):
            ei, k = self.data[(s, _, d)].edge_index, 1 + len(self.out_rel[s])
            rows.append(row_off[d] + ei[1])
            cols.append(col_off[s] + ei[0] * k + 1 + self.out_rel[s].index(r))
            vals.append(edge_norm(ei, self.num[s], self.num[d]))
        self.stacked = FixedAdjacency(torch.cat(rows), torch.cat(cols), torch.cat(vals), (o, c))

    def conv(self, layer, x):
        parts = []
        for i, t in enumerate(self.node_types):
            w = torch.cat([self.root[layer][i]] + [self.weight[layer][r] for r in self.out_rel[t]], dim=1)
            parts.append((x[t] @ w).view(-1, self.hidden))
        out = (self.stacked @ torch.cat(parts)).split([self.num[t] for t in self.node_types])
        return {t: out[i] + self.bias[layer][i] for i, t in enumerate(self.node_types)}


class Timer:
    """One model's epochs: a training step (forward, cross-entropy on the training labels,
    backward, Adam) plus an evaluation forward pass."""

    def __init__(self, model, task):
        self.model, self.task = model, task
        self.opt = torch.optim.Adam(model.parameters(), lr=0.01)
        self.times, self.cpu_times = [], []

    def epoch(self):
        data, y, train = self.task.data, self.task.y, self.task.split["train"]
        start, cpu_start = time.perf_counter(), time.process_time()
        self.model.train()
        self.opt.zero_grad()
        loss = F.cross_entropy(self.model(data)[train], y[train])
        loss.backward()
        self.opt.step()
        self.model.eval()
        with torch.no_grad():
            self.model(data)
        self.times.append(time.perf_counter() - start)
        self.cpu_times.append(time.process_time() - cpu_start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="data root (default $HGIMB_DATA)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated substrings of row names to run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    tasks = {name: load_dataset(name, args.root) for name in ("freebase", "acm")}
    cfg = ModelConfig(hidden=args.hidden, layers=args.layers, dropout=0.5, heads=4)
    base = lambda task, fast: (task.data, task.target, task.num_classes, args.hidden, args.layers, fast)  # noqa: E731
    rows = [
        ("freebase", "PyG RGCNConv, one global node index", lambda t: PygGlobal(*base(t, False))),
        ("freebase", "torch.sparse.mm per relation (torch CSR)", lambda t: PerRelation(*base(t, False), kernel="torch")),
        ("freebase", "autograd Function with cached A^T, torch CSR kernel",
         lambda t: PerRelation(*base(t, False), kernel="torch-cached")),
        ("freebase", "cached A^T, embedding_bag kernel (hgimb FixedAdjacency)", lambda t: PerRelation(*base(t, False))),
        ("freebase", "  + fast dropout", lambda t: PerRelation(*base(t, True))),
        ("freebase", "stacked: one fused product per layer + fast dropout", lambda t: Stacked(*base(t, True))),
        ("freebase", "hgimb `rgcn` (+ type pruning, cheaper product order)", lambda t: build_model("rgcn", t, cfg)),
        ("freebase", "hgimb `gat` (4 heads)", lambda t: build_model("gat", t, cfg)),
        ("freebase", "hgimb `mlp`", lambda t: build_model("mlp", t, cfg)),
        ("acm", "PyG RGCNConv, one global node index", lambda t: PygGlobal(*base(t, False))),
        ("acm", "hgimb `rgcn`", lambda t: build_model("rgcn", t, cfg)),
        ("acm", "hgimb `gat` (4 heads)", lambda t: build_model("gat", t, cfg)),
        ("acm", "hgimb `mlp`", lambda t: build_model("mlp", t, cfg)),
    ]
    wanted = [s for s in args.only.split(",") if s]
    rows = [r for r in rows if not wanted or any(w in f"{r[0]} {r[1]}" for w in wanted)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, hidden {args.hidden}, "
          f"{args.layers} layers; median of {args.epochs} epochs after {args.warmup} warm-up; "
          f"load average at start {os.getloadavg()[0]:.1f}\n")
    timers = []
    for dataset, name, make in rows:
        torch.manual_seed(0)
        timers.append(Timer(make(tasks[dataset]), tasks[dataset]))
    # round-robin epochs, so that every option sees the same background load (a shared machine)
    for _ in range(args.warmup + args.epochs):
        for timer in timers:
            timer.epoch()
    print("| dataset | option | s/epoch (median) | min | CPU s/epoch (median) |")
    print("|---|---|---|---|---|")
    for (dataset, name, _), timer in zip(rows, timers):
        wall, cpu = timer.times[args.warmup:], timer.cpu_times[args.warmup:]
        print(f"| {dataset} | {name} | {statistics.median(wall):.3f} | {min(wall):.3f} | {statistics.median(cpu):.3f} |")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
