"""``roost``: Roost, message passing over a crystal's stoichiometry (graph tasks).

Goodall & Lee, "Predicting materials properties without crystal structure: deep representation
learning from stoichiometry", Nat. Commun. 11, 6280 (2020); authors' code CompRhys/roost
(``roost/roost/model.py``, ``roost/segments.py``, ``roost/roost/data.py``).

A crystal becomes a dense graph of its distinct elements: node ``i`` carries the element's
embedding and its fraction ``w_i`` of the atoms; every ordered pair ``(i, j)`` of the same crystal,
``i = j`` included, is an edge. The model, as the authors' code computes it:

* ``h_i = [W e_i, w_i]`` (a linear map of the element embedding to ``hidden - 1`` values, the
  fraction appended);
* ``layers`` message layers, each ``heads`` heads averaged, residual:
  ``h_i <- h_i + mean_heads sum_j a_ij m([h_i, h_j])`` with
  ``a_ij = w_j^p exp(g([h_i, h_j])) / sum_k w_k^p exp(g([h_i, h_k]))``; ``g`` (to 1) and ``m`` (to
  ``hidden``) are Linear-LeakyReLU-Linear networks of width 256 and ``p`` is a learned power per
  head (initialised from N(0, 1), as in the code);
* the crystal vector: the same weighted attention pooling over the crystal's elements (``g``,
  ``m`` on ``h_i`` alone), ``heads`` heads averaged;
* the trunk and output networks: ReLU residual MLPs (``trunk_hidden``, default 1024 -> 512, then
  ``out_hidden``, default 256, 128, 64); the last linear layer is hgimb's classifier ``head``.
  ``--dropout`` (default 0: the authors use none) acts on the trunk's output.

The graphs come from the crystal loader (``data.z``, atomic numbers per atom): the elements and
their fractions are counted per crystal inside ``encode`` (vectorised over the batch), so the
CIF's structure beyond its composition is not used unless ``element_features=x``.

``element_features``: ``matscholar`` (default, the paper's choice) reads matminer's 200-d
Matscholar word embeddings (``MatscholarElementData``, Tshitoyan et al. 2019; elements 1-103,
others are refused, naming the structures); ``x`` uses the graph's own per-atom features
(``atom_init.json`` vectors, plus CHGNet's per-atom embeddings with ``--features chgnet``)
averaged over the atoms of each element, which makes the model see each element's sites.

Hybrid readout: as ``cgcnn``, per-crystal features ``data.u`` (``--features magpie``) are
standardised with training statistics, clipped, passed through one softplus layer of
``global_hidden`` units and concatenated to the crystal vector before the trunk.

Deviations from the authors' code: the element embeddings come from matminer's copy of the
Matscholar table (the authors ship their own JSON of the same embeddings; matminer's is used with
``impute_nan=False``, so a missing element is an error, not an average); hgimb's trainer, loss
and selection replace the authors' training loop (their defaults are taken as this model's:
Adam, lr 3e-4, weight decay 1e-6, batch 128, 100 epochs); the authors' "robust" (aleatoric)
head is not built; the hybrid readout is hgimb's addition.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter

from ..errors import HgimbError
from ..params import Param
from .base import GraphModel
from .crystal_common import GLOBAL_PARAMS, add_global_branch, global_branch, graph_index, readout_stats
from .registry import register_model

MAX_Z = 128  # key stride per crystal when counting elements: larger than any atomic number
ELEMENT_FEATURES = ("matscholar", "x")


@lru_cache(maxsize=1)
def matscholar_table() -> tuple[torch.Tensor, torch.Tensor]:
    """(table [MAX_Z, 200], known [MAX_Z] bool): matminer's Matscholar embedding per atomic number."""
    import warnings

    from matminer.utils.data import MatscholarElementData
    from pymatgen.core.periodic_table import Element

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = MatscholarElementData(impute_nan=False)
    names = source.prop_names
    table = torch.zeros(MAX_Z, len(names))
    known = torch.zeros(MAX_Z, dtype=torch.bool)
    for symbol, values in source.all_element_data.items():
        z = Element(symbol).Z
        table[z] = torch.tensor([float(values[n]) for n in names])
        known[z] = True
    return table, known


def parse_hidden(value: str, name: str) -> list[int]:
    """``"1024,512"`` -> [1024, 512]; an empty string is no hidden layer."""
    try:
        dims = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise HgimbError(f"roost: {name}={value!r} is not a comma-separated list of layer widths") from None
    if any(d < 1 for d in dims):
        raise HgimbError(f"roost: {name}={value!r}: layer widths must be positive")
    return dims


class SimpleNetwork(nn.Module):
    """Linear -> LeakyReLU per hidden width, then a linear output (the authors' ``SimpleNetwork``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int]):
        super().__init__()
        dims = [in_dim, *hidden]
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.out = nn.Linear(dims[-1], out_dim)

    def forward(self, x):
        for fc in self.fcs:
            x = F.leaky_relu(fc(x))
        return self.out(x)


class ResidualNetwork(nn.Module):
    """``x <- relu(W x) + R x`` per hidden width (``R`` the identity when widths agree, else a
    bias-free linear map); the authors' ``ResidualNetwork`` without its output layer when
    ``out_dim`` is None."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: Optional[int] = None):
        super().__init__()
        dims = [in_dim, *hidden]
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.res = nn.ModuleList(nn.Linear(a, b, bias=False) if a != b else nn.Identity()
                                 for a, b in zip(dims, dims[1:]))
        self.out = nn.Linear(dims[-1], out_dim) if out_dim is not None else None
        self.out_dim = out_dim if out_dim is not None else dims[-1]

    def forward(self, x):
        for fc, res in zip(self.fcs, self.res):
            x = F.relu(fc(x)) + res(x)
        return x if self.out is None else self.out(x)


class WeightedAttentionPooling(nn.Module):
    """``sum_j a_j m(x_j)`` per group with ``a_j = w_j^p exp(g(x_j)) / sum_k w_k^p exp(g(x_k))``
    over the rows of the same ``index`` (the authors' ``WeightedAttentionPooling``; their
    stabiliser: the gate's group maximum is subtracted, 1e-10 added to the denominator)."""

    def __init__(self, gate: nn.Module, message: nn.Module):
        super().__init__()
        self.gate = gate
        self.message = message
        self.pow = nn.Parameter(torch.randn(1))

    def forward(self, x, index, weights, size: int):
        gate = self.gate(x)
        gate = gate - scatter(gate, index, 0, dim_size=size, reduce="max").index_select(0, index)
        gate = weights.pow(self.pow) * gate.exp()
        gate = gate / (scatter(gate, index, 0, dim_size=size, reduce="sum").index_select(0, index) + 1e-10)
        return scatter(gate * self.message(x), index, 0, dim_size=size, reduce="sum")


class MessageLayer(nn.Module):
    """One Roost message layer: attention heads over element pairs, averaged, plus the residual."""

    def __init__(self, dim: int, heads: int, gate_hidden: Sequence[int], msg_hidden: Sequence[int]):
        super().__init__()
        self.heads = nn.ModuleList(
            WeightedAttentionPooling(SimpleNetwork(2 * dim, 1, gate_hidden), SimpleNetwork(2 * dim, dim, msg_hidden))
            for _ in range(heads))

    def forward(self, h, weights, self_idx, nbr_idx):
        pair = torch.cat([h.index_select(0, self_idx), h.index_select(0, nbr_idx)], dim=1)
        pair_weights = weights.index_select(0, nbr_idx)
        out = torch.stack([head(pair, self_idx, pair_weights, h.size(0)) for head in self.heads]).mean(0)
        return out + h


def composition_graph(z: torch.Tensor, index: torch.Tensor, num_graphs: int):
    """The stoichiometry graphs of a batch of crystals, vectorised.

    ``z``: atomic number per atom; ``index``: crystal per atom. Returns ``(element_of_atom [A],
    z [N], crystal [N], fraction [N, 1], self_idx [P], nbr_idx [P])``: one node per distinct
    (crystal, element), grouped by crystal, and every ordered pair of nodes of the same crystal."""
    key = index * MAX_Z + z
    keys, element_of_atom, counts = torch.unique(key, sorted=True, return_inverse=True, return_counts=True)
    crystal = torch.div(keys, MAX_Z, rounding_mode="floor")
    atoms = torch.bincount(index, minlength=num_graphs)
    fraction = (counts.to(torch.float32) / atoms.index_select(0, crystal).to(torch.float32)).unsqueeze(1)
    per_crystal = torch.bincount(crystal, minlength=num_graphs)  # elements per crystal
    start = torch.cumsum(per_crystal, 0) - per_crystal  # first node of each crystal
    degree = per_crystal.index_select(0, crystal)  # each node pairs with every node of its crystal
    self_idx = torch.repeat_interleave(torch.arange(keys.numel(), device=z.device), degree)
    block_start = torch.cumsum(degree, 0) - degree
    offset = torch.arange(self_idx.numel(), device=z.device) - block_start.index_select(0, self_idx)
    nbr_idx = start.index_select(0, crystal.index_select(0, self_idx)) + offset
    return element_of_atom, keys - crystal * MAX_Z, crystal, fraction, self_idx, nbr_idx


class Roost(GraphModel):
    """Roost: element embedding -> message layers -> weighted attention pooling -> residual MLPs."""

    graph_attributes = ("x", "z", "u")  # the model contract: what encode reads (no edges)

    def __init__(self, element_dim: int, num_classes: int, hidden: int = 64, layers: int = 3, heads: int = 3,
                 gate_hidden: Sequence[int] = (256,), msg_hidden: Sequence[int] = (256,),
                 trunk_hidden: Sequence[int] = (1024, 512), out_hidden: Sequence[int] = (256, 128, 64),
                 dropout: float = 0.0, element_features: str = "matscholar",
                 global_stats: Optional[tuple] = None, global_hidden: int = 64):
        if hidden < 2:
            raise HgimbError("roost: --hidden must be at least 2 (one value holds the element fraction)")
        fused = global_stats is not None
        crystal_dim = hidden + (global_hidden if fused else 0)
        trunk = ResidualNetwork(crystal_dim, list(trunk_hidden)[:-1], list(trunk_hidden)[-1]) if trunk_hidden else None
        trunk_out = trunk.out_dim if trunk is not None else crystal_dim
        output = ResidualNetwork(trunk_out, list(out_hidden))
        super().__init__(output.out_dim, num_classes)
        self.element_features = element_features
        if element_features == "matscholar":
            table, known = matscholar_table()
            self.register_buffer("element_table", table.clone())
            self.register_buffer("element_known", known.clone())
        self.embedding = nn.Linear(element_dim, hidden - 1)
        self.message_layers = nn.ModuleList(MessageLayer(hidden, heads, gate_hidden, msg_hidden) for _ in range(layers))
        self.pool_heads = nn.ModuleList(
            WeightedAttentionPooling(SimpleNetwork(hidden, 1, gate_hidden), SimpleNetwork(hidden, hidden, msg_hidden))
            for _ in range(heads))
        add_global_branch(self, global_stats, global_hidden)  # hybrid readout (data.u), as cgcnn
        self.trunk = trunk
        self.output = output
        self.dropout = dropout

    def _element_inputs(self, batch, element_of_atom, z, num_nodes):
        if self.element_features == "x":
            return scatter(batch.x, element_of_atom, 0, dim_size=num_nodes, reduce="mean")
        missing = ~self.element_known.index_select(0, z)
        if bool(missing.any()):
            raise HgimbError(f"roost: no Matscholar embedding for atomic number(s) "
                             f"{sorted(set(z[missing].tolist()))}; use --model-option element_features=x")
        return self.element_table.index_select(0, z)

    def encode(self, batch) -> torch.Tensor:
        index, num_graphs = graph_index(batch)
        element_of_atom, z, crystal, fraction, self_idx, nbr_idx = composition_graph(batch.z, index, num_graphs)
        h = self.embedding(self._element_inputs(batch, element_of_atom, z, z.numel()))
        h = torch.cat([h, fraction], dim=1)
        for layer in self.message_layers:
            h = layer(h, fraction, self_idx, nbr_idx)
        out = torch.stack([head(h, crystal, fraction, num_graphs) for head in self.pool_heads]).mean(0)
        if self.global_fc is not None:
            out = torch.cat([out, global_branch(self, batch.u)], dim=1)
        if self.trunk is not None:
            out = self.trunk(out)
        out = F.dropout(out, p=self.dropout, training=self.training)
        return self.output(out)


def _check_elements(task) -> None:
    """Refuse a dataset with elements Matscholar has no embedding for, naming the structures."""
    z = torch.cat([g.z for g in task.graphs])
    known = matscholar_table()[1]
    missing = ~known[z.clamp(max=MAX_Z - 1)] | (z >= MAX_Z)
    if not bool(missing.any()):
        return
    graph = torch.repeat_interleave(torch.arange(len(task.graphs)), torch.tensor([g.z.numel() for g in task.graphs]))
    bad = sorted(set(graph[missing].tolist()))
    ids = [str(task.item_ids[i]) if task.item_ids is not None else str(i) for i in bad[:3]]
    raise HgimbError(f"roost: no Matscholar embedding for atomic number(s) {sorted(set(z[missing].tolist()))} "
                     f"in {len(bad)} structure(s) of '{task.name}' (first: {', '.join(ids)}); "
                     f"use --model-option element_features=x")


ROOST_PARAMS = (
    Param("element_features", str, "matscholar", "element inputs: Matscholar embeddings, or the graph's "
          "per-atom features averaged per element", choices=ELEMENT_FEATURES),
    Param("gate_hidden", str, "256", "hidden widths of the attention gate networks (comma-separated)"),
    Param("msg_hidden", str, "256", "hidden widths of the message networks (comma-separated)"),
    Param("trunk_hidden", str, "1024,512", "residual trunk widths after pooling (comma-separated)"),
    Param("out_hidden", str, "256,128,64", "residual output widths before the classifier (comma-separated)"),
) + GLOBAL_PARAMS


@register_model("roost", kinds=("graph",), help="Roost: attention message passing over the stoichiometry",
                # the authors' training defaults: Adam lr 3e-4, weight decay 1e-6, batch 128, 100 epochs
                defaults={"hidden": 64, "layers": 3, "heads": 3, "dropout": 0.0, "lr": 3e-4,
                          "weight_decay": 1e-6, "batch_size": 128, "epochs": 100, "patience": 30},
                params=ROOST_PARAMS)
def build_roost(task, cfg) -> Roost:
    if not task.graphs or getattr(task.graphs[0], "z", None) is None:
        raise HgimbError(f"dataset '{task.name}': roost needs crystal graphs with atomic numbers (data.z)")
    opts = dict(cfg.options)
    element_features = opts.pop("element_features")
    if element_features == "matscholar":
        _check_elements(task)
    element_dim = int(task.graphs[0].x.size(-1)) if element_features == "x" else matscholar_table()[0].size(1)
    stats = readout_stats(task, opts)
    return Roost(element_dim, task.num_classes, hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads,
                 gate_hidden=parse_hidden(opts["gate_hidden"], "gate_hidden"),
                 msg_hidden=parse_hidden(opts["msg_hidden"], "msg_hidden"),
                 trunk_hidden=parse_hidden(opts["trunk_hidden"], "trunk_hidden"),
                 out_hidden=parse_hidden(opts["out_hidden"], "out_hidden"),
                 dropout=cfg.dropout, element_features=element_features, global_stats=stats,
                 global_hidden=opts["global_hidden"])
