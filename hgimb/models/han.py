"""HAN (Wang et al., WWW 2019) with PyG's ``HANConv`` over metapath-induced graphs.

Metapaths come from ``cfg.options["metapaths"]`` (a ``--metapaths`` string, or a list of
metapaths) or the dataset's defaults (:func:`hgimb.models.metapaths.default_metapaths`:
Freebase movie-actor-movie, movie-director-movie, movie-writer-movie; ACM paper-author-paper,
paper-subject-paper). Each metapath becomes one graph over its end-point types (scipy sparse
products, :func:`metapath_edge_index`), with a self-loop per node when it starts and ends at the
same type (so a node with no metapath neighbour still keeps its own features). ``HANConv`` does
node-level attention per metapath and semantic attention across them.

Inputs: the node features where present (``HANConv`` projects them itself), a learnable
embedding of size ``hidden`` per node otherwise. ``layers`` ``HANConv`` layers are stacked (the
HAN paper uses one); ``heads`` must divide ``hidden``. Dropout on the inputs and attention.
Options: ``metapaths``.
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import HANConv
from torch_geometric.utils import add_self_loops, remove_self_loops

from ..errors import HgimbError
from .base import GraphModel, gather_targets
from .metapaths import default_metapaths, metapath_edge_index, metapath_name, parse_metapaths
from ..params import Param
from .registry import register_model


def resolve_metapaths(task, options) -> List[list]:
    spec = (options or {}).get("metapaths")
    if spec:
        return parse_metapaths(spec, task.data)
    return default_metapaths(task.name, task.data, target=task.target)


def metapath_graphs(data, metapaths) -> Dict[tuple, torch.Tensor]:
    """``{(start, 'metapath_k', end): edge_index}`` with self-loops on same-type paths."""
    out = {}
    for k, path in enumerate(metapaths):
        start, end = path[0][0], path[-1][2]
        ei = metapath_edge_index(data, path)
        if start == end:
            ei = add_self_loops(remove_self_loops(ei)[0], num_nodes=int(data[start].num_nodes))[0]
        out[(start, f"metapath_{k}", end)] = ei
    return out


class HAN(GraphModel):
    # Read by the neighbour-sampling trainer (--batch-size): a subgraph sampled hop by hop over the
    # original relations is not a sample of HAN's metapath neighbourhoods (they need
    # layers x metapath-length hops, and semantic attention averages over every node of the graph).
    supports_neighbor_sampling = False
    no_sampling_reason = ("model 'han' cannot train on neighbour-sampled mini-batches (its metapath "
                          "graphs need whole-graph neighbourhoods); drop --batch-size, or use rgcn, "
                          "gat, simple-hgn or hgt for mini-batch training")

    def __init__(self, task, cfg):
        hidden, heads = int(cfg.hidden), int(cfg.heads)
        if hidden % heads:
            raise HgimbError(f"han needs --hidden divisible by --heads (got hidden {hidden}, heads {heads})")
        super().__init__(hidden, task.num_classes)
        self.target_types = list(task.target_types)
        self.metapaths = resolve_metapaths(task, cfg.options)
        ends = {p[-1][2] for p in self.metapaths}
        missing = [t for t in self.target_types if t not in ends]
        if missing:
            names = ", ".join(metapath_name(p) for p in self.metapaths)
            raise HgimbError(
                f"han: no metapath ends at target type(s) {', '.join(missing)} (metapaths: {names}); "
                f"give --metapaths such as {missing[0]}-<type>-{missing[0]}"
            )
        self.node_types = sorted({p[0][0] for p in self.metapaths} | ends)
        self.dropout = float(cfg.dropout)
        in_channels, self.embed = {}, nn.ModuleDict()
        for nt in self.node_types:
            x = getattr(task.data[nt], "x", None)
            if x is not None:
                in_channels[nt] = int(x.size(-1))
            else:
                self.embed[nt] = nn.Embedding(int(task.data[nt].num_nodes), hidden)
                in_channels[nt] = hidden
        edge_types = [(p[0][0], f"metapath_{k}", p[-1][2]) for k, p in enumerate(self.metapaths)]
        metadata = (self.node_types, edge_types)
        layers = max(int(cfg.layers), 1)
        # after the first layer, types that receive messages are ``hidden`` wide; start-only types
        # of asymmetric metapaths keep their input
        later = {nt: (hidden if nt in ends else in_channels[nt]) for nt in self.node_types}
        self.convs = nn.ModuleList(
            HANConv(in_channels if i == 0 else later, hidden, metadata, heads=heads, dropout=self.dropout)
            for i in range(layers)
        )
        self._graph_cache = None  # (data, graphs) for the full graph, built once
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for emb in self.embed.values():
            nn.init.xavier_uniform_(emb.weight)

    def _graphs(self, data):
        if self._graph_cache is not None and self._graph_cache[0] is data:
            return self._graph_cache[1]
        device = next(iter(data.edge_index_dict.values())).device if data.edge_types else torch.device("cpu")
        graphs = {k: v.to(device) for k, v in metapath_graphs(data, self.metapaths).items()}
        if getattr(data[self.target_types[0]], "batch_size", None) is None:  # cache full graphs only
            self._graph_cache = (data, graphs)
        return graphs

    def encode(self, data) -> torch.Tensor:
        graphs = self._graphs(data)
        x_dict = {}
        for nt in self.node_types:
            store = data[nt]
            if nt in self.embed:
                n_id = getattr(store, "n_id", None)
                weight = self.embed[nt].weight
                x = weight if n_id is None else weight[n_id]
            else:
                x = store.x
            x_dict[nt] = F.dropout(x, self.dropout, self.training)
        for i, conv in enumerate(self.convs):
            out = conv(x_dict, graphs)
            x_dict = {k: (out.get(k) if out.get(k) is not None else v) for k, v in x_dict.items()}
            if i < len(self.convs) - 1:
                x_dict = {k: F.dropout(v, self.dropout, self.training) for k, v in x_dict.items()}
        return gather_targets(x_dict, data, self.target_types)


@register_model("han", kinds=("node",), help="HAN (Wang et al. WWW 2019), PyG HANConv over metapath graphs (--metapaths)",
                params=(Param("metapaths", None, None, "metapaths (--metapaths; default: the dataset's usual ones)",
                              none=True),),
                # the HAN reference code's settings (heads 8, one layer, dropout 0.6, lr 0.005, weight decay 0.001)
                defaults={"heads": 8, "layers": 1, "dropout": 0.6, "lr": 0.005, "weight_decay": 0.001})
def build_han(task, cfg):
    return HAN(task, cfg)
