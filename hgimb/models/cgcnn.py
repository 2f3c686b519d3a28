"""Crystal graph models (graph tasks): ``cgcnn`` and the graph-task ``gat``.

Both take a PyG ``Batch`` of crystal graphs (``x`` element features, ``edge_attr`` Gaussian
distance features, ``batch`` graph index) and return one embedding per graph; the inherited
linear ``head`` is the classifier.

Mapping of :class:`ModelConfig` onto CGCNN (Xie & Grossman 2018; defaults atom feature 64,
3 conv layers, hidden 128, mean pooling, dropout before the output layer in classification):
``hidden`` -> atom feature size (64), ``layers`` -> number of conv layers (CGCNN uses 3; pass
``--layers 3``), ``dropout`` -> the dropout after pooling (CGCNN's ``nn.Dropout()``, p = 0.5).
``options``: ``fc_hidden`` (128), ``fc_layers`` (1 = conv_to_fc only), ``pool``
(mean | add | max), ``batch_norm`` (true), ``globals`` (concat | none) and ``global_hidden`` (64).

Hybrid readout: when the graphs carry per-crystal features ``u`` (``--features magpie``,
``chgnet``), ``cgcnn`` standardises them with training-split statistics (clipped to +-10 sd),
maps them through one softplus layer of ``global_hidden`` units and concatenates the result with
the pooled, ``conv_to_fc``-transformed atom embedding before dropout and the head (as MEGNet
feeds its state vector ``u`` into the readout; ``globals=none`` ignores ``u``).

BatchNorm uses batch statistics only in training; in eval mode it uses running statistics, so
a graph's output never depends on which other graphs share its batch (tested).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import CGConv

from ..errors import HgimbError
from .base import GraphModel, ModelConfig
from ..params import Param, Range
from .crystal_common import GLOBAL_PARAMS, add_global_branch, global_branch, graph_index, readout_stats
from .registry import register_model

_POOLS = ("mean", "add", "max")


def _pool(name: str):
    from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

    return {"mean": global_mean_pool, "add": global_add_pool, "max": global_max_pool}[name]


def _input_dims(task) -> tuple[int, int]:
    if not task.graphs:
        raise HgimbError(f"dataset '{task.name}' has no graphs")
    first = task.graphs[0]
    if getattr(first, "x", None) is None or getattr(first, "edge_attr", None) is None:
        raise HgimbError(f"dataset '{task.name}': crystal models need graphs with node features x and edge_attr")
    return int(first.x.size(-1)), int(first.edge_attr.size(-1))


POOL = Param("pool", str, "mean", "readout over a crystal's atoms", choices=tuple(_POOLS))
CGCNN_PARAMS = (  # --model-option parameters
    Param("fc_hidden", int, 128, "width of the layers after pooling", Range(1)),
    Param("fc_layers", int, 1, "layers after pooling (1 = conv_to_fc only)", Range(1)),
    POOL,
    Param("batch_norm", bool, True, "batch norm in the convolutions"),
) + GLOBAL_PARAMS


class FactoredCGConv(CGConv):
    """PyG ``CGConv`` (same parameters, same output) computed in factored form.

    CGConv builds ``z = [x_i, x_j, e_ij]`` for every edge and multiplies it by ``lin_f`` and
    ``lin_s``: ``E x (2C + D) x 2C`` multiply-adds. Splitting the weight into its ``x_i``,
    ``x_j`` and ``e`` blocks computes the node blocks once per node and gathers them per
    edge, so the per-edge product shrinks to ``E x D x 2C`` -- about 3x less work for
    CGCNN's 64 channels and 41 Gaussian features (crystal graphs have ~12 edges per atom).
    Equality with ``CGConv.forward`` is tested.
    """

    def forward(self, x, edge_index, edge_attr=None):
        if not isinstance(x, torch.Tensor) or self.aggr != "add":
            return super().forward(x, edge_index, edge_attr)
        channels = x.size(-1)
        src, dst = edge_index[0], edge_index[1]
        weight = torch.cat([self.lin_f.weight, self.lin_s.weight], dim=0)  # [2C, 2C + D]
        node_i = x @ weight[:, :channels].t()  # the x_i (target) block, per node
        node_j = x @ weight[:, channels:2 * channels].t()  # the x_j (source) block, per node
        gate = node_i.index_select(0, dst) + node_j.index_select(0, src)
        if edge_attr is not None:
            gate = gate + edge_attr @ weight[:, 2 * channels:].t()
        if self.lin_f.bias is not None:
            gate = gate + torch.cat([self.lin_f.bias, self.lin_s.bias])
        filt, core = gate.split(self.lin_f.out_features, dim=-1)
        message = filt.sigmoid() * F.softplus(core)
        out = torch.zeros(x.size(0), message.size(-1), dtype=message.dtype, device=message.device)
        out.index_add_(0, dst, message)
        out = out if self.bn is None else self.bn(out)
        return out + x


class CGCNN(GraphModel):
    """CGCNN with PyG ``CGConv`` (factored): embedding -> n_conv x (CGConv + softplus) -> pool -> FC."""

    def __init__(self, node_dim: int, edge_dim: int, num_classes: int, atom_fea_len: int = 64, n_conv: int = 3,
                 fc_hidden: int = 128, fc_layers: int = 1, dropout: float = 0.5, pool: str = "mean",
                 batch_norm: bool = True, global_stats: Optional[tuple] = None, global_hidden: int = 64):
        fused = global_stats is not None
        super().__init__(fc_hidden + (global_hidden if fused else 0), num_classes)
        self.embedding = nn.Linear(node_dim, atom_fea_len)
        # CGConv: x_i + BN(sum_j sigmoid(z W_f) * softplus(z W_s)), z = [x_i, x_j, e_ij]; CGCNN then
        # applies softplus to that sum, which CGConv leaves out, so forward adds it.
        self.convs = nn.ModuleList(FactoredCGConv(atom_fea_len, edge_dim, aggr="add", batch_norm=batch_norm)
                                   for _ in range(n_conv))
        self.conv_to_fc = nn.Linear(atom_fea_len, fc_hidden)
        self.fcs = nn.ModuleList(nn.Linear(fc_hidden, fc_hidden) for _ in range(fc_layers - 1))
        self.dropout = dropout
        self.pool = _pool(pool)
        add_global_branch(self, global_stats, global_hidden)

    def encode(self, batch) -> torch.Tensor:
        index, num_graphs = graph_index(batch)
        x = self.embedding(batch.x)
        for conv in self.convs:
            x = F.softplus(conv(x, batch.edge_index, batch.edge_attr))
        h = self.pool(x, index, size=num_graphs)
        h = F.softplus(self.conv_to_fc(F.softplus(h)))
        if self.global_fc is not None:
            h = torch.cat([h, global_branch(self, batch.u)], dim=1)
        h = F.dropout(h, p=self.dropout, training=self.training)
        for fc in self.fcs:
            h = F.softplus(fc(h))
        return h


class CrystalGAT(GraphModel):
    """GAT over crystal graphs: GATConv with the Gaussian distance features as edge features
    (``edge_dim``), residual connections, ELU, then pooling, the hybrid readout's per-crystal
    branch when ``global_stats`` is given (as ``cgcnn``), and one FC layer."""

    def __init__(self, node_dim: int, edge_dim: int, num_classes: int, hidden: int = 64, layers: int = 3,
                 heads: int = 4, dropout: float = 0.5, pool: str = "mean", attention_dropout: float = 0.0,
                 global_stats: Optional[tuple] = None, global_hidden: int = 64):
        super().__init__(hidden, num_classes)
        from torch_geometric.nn import GATConv

        self.embedding = nn.Linear(node_dim, hidden)
        # concat=False averages the heads, so ``hidden`` needs no divisibility by ``heads``
        self.convs = nn.ModuleList(
            GATConv(hidden, hidden, heads=heads, concat=False, edge_dim=edge_dim, dropout=attention_dropout)
            for _ in range(layers)
        )
        self.fc = nn.Linear(hidden + (global_hidden if global_stats is not None else 0), hidden)
        self.dropout = dropout
        self.pool = _pool(pool)
        add_global_branch(self, global_stats, global_hidden)

    def encode(self, batch) -> torch.Tensor:
        index, num_graphs = graph_index(batch)
        x = F.elu(self.embedding(batch.x))
        for conv in self.convs:
            x = x + F.elu(conv(x, batch.edge_index, batch.edge_attr))
        h = self.pool(x, index, size=num_graphs)
        if self.global_fc is not None:
            h = torch.cat([h, global_branch(self, batch.u)], dim=1)
        h = F.dropout(h, p=self.dropout, training=self.training)
        return F.elu(self.fc(h))


@register_model("cgcnn", kinds=("graph",), help="CGCNN (PyG CGConv) for crystal graphs",
                # CGCNN's reference settings at this data size (3 conv layers, no dropout, mini-batches of 64)
                defaults={"layers": 3, "dropout": 0.0, "lr": 0.003, "weight_decay": 0.0, "batch_size": 64,
                          "epochs": 60, "patience": 20},
                params=CGCNN_PARAMS)
def build_cgcnn(task, cfg: ModelConfig) -> CGCNN:
    node_dim, edge_dim = _input_dims(task)
    opts = dict(cfg.options)
    stats = readout_stats(task, opts)
    return CGCNN(node_dim, edge_dim, task.num_classes, atom_fea_len=cfg.hidden, n_conv=cfg.layers,
                 dropout=cfg.dropout, global_stats=stats, **opts)


@register_model("gat", kinds=("graph",), help="GAT (PyG GATConv with edge features)",
                params=(POOL, Param("attention_dropout", float, 0.0, "dropout on attention coefficients",
                                    Range(0, 1, high_open=True))) + GLOBAL_PARAMS)
def build_crystal_gat(task, cfg: ModelConfig) -> CrystalGAT:
    node_dim, edge_dim = _input_dims(task)
    opts = dict(cfg.options)
    stats = readout_stats(task, opts)
    return CrystalGAT(node_dim, edge_dim, task.num_classes, hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads,
                      dropout=cfg.dropout, global_stats=stats, **opts)
