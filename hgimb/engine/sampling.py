"""Heterogeneous neighbour sampling for mini-batch training of node tasks.

``sample(seeds, fanout)`` returns a ``HeteroData`` subgraph laid out as PyG's ``NeighborLoader``
lays it out: for every seed node type the first ``data[t].batch_size`` nodes are the seeds, in
the order given; ``data[t].n_id`` holds the original node ids of every type, node attributes
(``x``, ...) are sliced, and each relation holds the sampled edges relabelled to local ids,
``e_id`` (original edge positions) and its sliced edge attributes (``edge_weight``, ...).

Sampling semantics (PyG's "directional" neighbour sampling, without replacement): messages flow
``src -> dst``, so a node samples among its *in*-edges. Hop ``h`` (``fanout[h]`` neighbours per
relation, ``-1`` = all, ``0`` = none) samples, for every relation ``(src, rel, dst)``, the in-edges
of the nodes of type ``dst`` that were reached for the first time at hop ``h - 1`` (the seeds
at hop 0). Every node is therefore sampled once, with the fanout of the hop that first reached
it: no edge appears twice, each node has at most ``fanout`` in-edges per relation, and with
``fanout = -1`` at every hop the seeds' receptive field is exact (mini-batch outputs equal
full-graph outputs, tests/test_sampling.py checks this).

Two backends:

- **PyG** (:class:`PygNeighborSampler`): ``NeighborLoader``'s sampler and ``filter_fn``, used when
  ``pyg-lib`` or ``torch-sparse`` is importable (their compiled samplers are what PyG needs) and
  the batch has seeds of one node type (``NeighborLoader`` takes one input type);
- **plain torch** (:class:`HeteroNeighborSampler`): our own, everywhere else. Why our own code:
  PyG's ``NeighborSampler`` refuses to run without one of those two compiled extensions, and
  neither installs here: ``pyg-lib`` is not on the package index at all (its wheels live on
  PyG's own download server, which the machines cannot reach) and ``torch-sparse`` is there only
  as a 2023 source release (0.6.18) that must be compiled against torch and predates the torch
  this project runs. The torch sampler is vectorised: one CSR (in-edges grouped by destination)
  per relation is built once and cached; per relation and hop, the in-edges of all frontier
  nodes are taken with ``repeat_interleave`` arithmetic when the degree is at most the fanout,
  and otherwise ``k`` of the ``d`` positions are drawn without replacement for all those nodes
  at once (Robert Floyd's algorithm vectorised over nodes: ``k`` steps, each one ``torch.rand``
  scaled by the growing range; or, for large fanouts, random keys and one segment sort). New
  nodes are found with ``torch.unique``/``torch.isin`` and edges relabelled with one
  ``searchsorted`` per type: no Python loop over nodes or edges, only over relations, hops and
  fanout slots. Deterministic given a ``torch.Generator``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch_geometric.utils import cumsum

from ..errors import HgimbError

EdgeType = Tuple[str, str, str]

# Fanouts up to this use Floyd's algorithm (O(k^2) per node, no per-edge work); larger ones
# draw one random key per in-edge and sort within each node's segment.
FLOYD_MAX_FANOUT = 64


# ---------------------------------------------------------------------------- fanout
def parse_fanout(text) -> List[int]:
    """``"10,10"`` -> ``[10, 10]``: one number per hop, ``-1`` = all neighbours, ``0`` = none."""
    if isinstance(text, (list, tuple)):
        parts = [str(p) for p in text]
    else:
        parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = None
    if not values or any(v < -1 for v in values):
        raise HgimbError(f"--fanout '{text}' must be comma-separated integers, one per hop "
                         f"(neighbours per node and relation; -1 = all), e.g. --fanout 10,10")
    return values


def fanout_for(model, fanout: Sequence[int], text: Optional[str] = None) -> List[int]:
    """The fanout per hop for ``model`` (its declared ``num_hops``: :mod:`hgimb.models.base`): one
    number is used for every hop; otherwise there must be exactly one per hop of the model (a
    shorter list would cut its receptive field silently). A model with 0 hops gets no neighbours."""
    from ..models.base import declared_hops

    hops = declared_hops(model)
    fanout = list(fanout)
    if hops == 0:
        return []
    if len(fanout) == 1:
        return fanout * hops
    if len(fanout) != hops:
        shown = text if text is not None else ",".join(str(f) for f in fanout)
        raise HgimbError(
            f"--fanout {shown} gives {len(fanout)} hop(s) but {type(model).__name__} passes messages over "
            f"{hops} hop(s); give one number per hop (e.g. --fanout {','.join(['10'] * hops)}) or a single number for all hops")
    return fanout


# ---------------------------------------------------------------------------- backend choice
def pyg_sampling_available() -> bool:
    """True when PyG's compiled neighbour samplers (pyg-lib or torch-sparse) are importable."""
    try:
        import torch_geometric.typing as pyg_typing
    except ImportError:  # pragma: no cover - PyG is a dependency
        return False
    return bool(getattr(pyg_typing, "WITH_PYG_LIB", False) or getattr(pyg_typing, "WITH_TORCH_SPARSE", False))


def make_sampler(data, backend: str = "auto"):
    """``auto``: PyG's sampler where it can run (falling back per batch), else the torch one."""
    if backend not in ("auto", "pyg", "torch"):
        raise HgimbError(f"sampler backend '{backend}' is not one of auto, pyg, torch")
    if backend == "pyg" and not pyg_sampling_available():
        raise HgimbError("sampler backend 'pyg' needs pyg-lib or torch-sparse, and neither is importable; use backend 'torch'")
    if backend == "pyg" or (backend == "auto" and pyg_sampling_available()):
        return PygNeighborSampler(data)
    return HeteroNeighborSampler(data)


# ---------------------------------------------------------------------------- torch sampler
class RelationCSR:
    """In-edges of one relation grouped by destination: ``indptr`` (``[num_dst + 1]``), and per
    in-edge the source node (``src``) and original edge position (``eid``), stored as int32 when
    they fit (halves the memory of a 50M-edge graph)."""

    def __init__(self, edge_index: torch.Tensor, num_src: int, num_dst: int):
        edge_index = edge_index.cpu()
        dst = edge_index[1]
        num_edges = int(dst.numel())
        order = torch.argsort(dst, stable=True)  # by destination; within it, original order
        self.indptr = cumsum(torch.bincount(dst, minlength=num_dst))  # dst unsorted: see models/sparse/csr.py
        small = max(num_edges, num_src) < 2 ** 31 - 1
        index_dtype = torch.int32 if small else torch.long
        self.src = edge_index[0][order].to(index_dtype)
        self.eid = order.to(index_dtype)
        self.num_dst = num_dst

    def sample(self, nodes: torch.Tensor, fanout: int, generator: Optional[torch.Generator]
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """In-edges of ``nodes`` (destination ids): at most ``fanout`` per node, without
        replacement (``-1`` = all). Returns ``(position in nodes, source id, edge id)`` per edge."""
        start = self.indptr[nodes]
        degree = self.indptr[nodes + 1] - start
        count = degree if fanout < 0 else degree.clamp(max=fanout)
        row = torch.repeat_interleave(torch.arange(nodes.numel()), count)
        out_start = torch.cumsum(count, 0) - count  # where each node's edges begin in the output
        within = torch.arange(row.numel()) - out_start[row]  # 0..count-1: "take every in-edge"
        if fanout >= 0:
            big = torch.nonzero(degree > fanout).squeeze(1)  # nodes that must choose
            if big.numel() and fanout > 0:
                chosen = choose_without_replacement(degree[big], fanout, generator)  # [m, fanout]
                slots = (out_start[big].unsqueeze(1) + torch.arange(fanout)).reshape(-1)
                within[slots] = chosen.reshape(-1)
        position = start[row] + within
        return row, self.src[position].long(), self.eid[position].long()


def choose_without_replacement(degree: torch.Tensor, k: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """For each entry ``d`` of ``degree`` (all ``> k``), ``k`` distinct offsets in ``[0, d)``,
    uniformly: ``[len(degree), k]``."""
    m = degree.numel()
    if k <= FLOYD_MAX_FANOUT:
        # Floyd: for j = d-k .. d-1, draw t in [0, j]; keep t unless already chosen, then keep j.
        chosen = torch.empty(m, k, dtype=torch.long)
        for step in range(k):  # a loop over fanout slots, vectorised over all nodes
            j = degree - k + step
            t = (torch.rand(m, dtype=torch.float64, generator=generator) * (j + 1)).long().clamp_(max=j)
            if step:
                taken = (chosen[:, :step] == t.unsqueeze(1)).any(1)
                t = torch.where(taken, j, t)
            chosen[:, step] = t
        return chosen
    # large fanouts: one random key per in-edge, sorted within each node's segment, first k kept
    segment = torch.repeat_interleave(torch.arange(m), degree)
    seg_start = torch.cumsum(degree, 0) - degree
    keys = torch.rand(segment.numel(), dtype=torch.float64, generator=generator)
    order = torch.argsort(segment.double() + keys)  # segments stay in order; random inside
    rank = torch.arange(order.numel()) - seg_start[segment]  # rank of each sorted entry in its segment
    keep = order[rank < k]
    return (keep - seg_start[segment[keep]]).view(m, k)


class HeteroNeighborSampler:
    """Vectorised heterogeneous neighbour sampler in plain torch (see the module docstring).

    The CSR of each relation is built on first use and cached with the sampler; the graph must
    not change afterwards. Sampling runs on the CPU; move the returned subgraph to the device.
    """

    backend = "torch"

    def __init__(self, data):
        self.data = data
        self.num_nodes = {t: int(data[t].num_nodes) for t in data.node_types}
        self._csr: Dict[EdgeType, RelationCSR] = {}

    def csr(self, edge_type: EdgeType) -> RelationCSR:
        if edge_type not in self._csr:
            src, _, dst = edge_type
            self._csr[edge_type] = RelationCSR(self.data[edge_type].edge_index, self.num_nodes[src], self.num_nodes[dst])
        return self._csr[edge_type]

    def prepare(self) -> "HeteroNeighborSampler":
        """Build every relation's CSR now (otherwise on first use)."""
        for edge_type in self.data.edge_types:
            self.csr(edge_type)
        return self

    def sample(self, seeds: Dict[str, torch.Tensor], fanout: Sequence[int],
               generator: Optional[torch.Generator] = None):
        """Sampled subgraph around ``seeds`` (``{node type: distinct node ids}``, in the order they
        should come first), ``len(fanout)`` hops."""
        seeds = {t: _check_seeds(t, ids, self.num_nodes) for t, ids in seeds.items()}
        blocks: Dict[str, List[torch.Tensor]] = {t: [] for t in self.data.node_types}
        count = {t: 0 for t in self.data.node_types}  # nodes of each type so far
        frontier: Dict[str, Tuple[int, torch.Tensor]] = {}  # type -> (local id of first, global ids)
        for t, ids in seeds.items():
            blocks[t].append(ids)
            frontier[t] = (0, ids)
            count[t] = ids.numel()
        edges: Dict[EdgeType, List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {et: [] for et in self.data.edge_types}
        for k in fanout:
            found: Dict[str, List[torch.Tensor]] = {}
            for edge_type in self.data.edge_types:
                src, _, dst = edge_type
                if dst not in frontier or k == 0:
                    continue
                first, nodes = frontier[dst]
                if nodes.numel() == 0:
                    continue
                row, src_ids, eid = self.csr(edge_type).sample(nodes, k, generator)
                edges[edge_type].append((src_ids, row + first, eid))  # src still global, dst local
                found.setdefault(src, []).append(src_ids)
            frontier = {}
            for t, parts in found.items():  # new nodes: reached now, not seen before
                candidates = torch.unique(torch.cat(parts))
                new = candidates[~torch.isin(candidates, torch.cat(blocks[t]))] if blocks[t] else candidates
                if new.numel():
                    frontier[t] = (count[t], new)
                    blocks[t].append(new)
                    count[t] += new.numel()
            if not frontier:
                break
        return self._build(seeds, blocks, edges)

    def _build(self, seeds, blocks, edges):
        from torch_geometric.data import HeteroData

        data, out = self.data, HeteroData()
        n_id, lookup = {}, {}
        for t in data.node_types:
            ids = torch.cat(blocks[t]) if blocks[t] else torch.empty(0, dtype=torch.long)
            n_id[t] = ids
            sorted_ids, perm = torch.sort(ids)
            lookup[t] = (sorted_ids, perm)
            store = data[t]
            for key, value in store.items():
                if key in ("num_nodes", "n_id", "batch_size", "e_id"):
                    continue
                if torch.is_tensor(value) and store.is_node_attr(key):
                    out[t][key] = value[ids.to(value.device)]
            out[t].n_id = ids
            out[t].num_nodes = int(ids.numel())
            if t in seeds:
                out[t].batch_size = int(seeds[t].numel())
        for edge_type in data.edge_types:
            src = edge_type[0]
            pieces = edges[edge_type]
            if pieces:
                src_global = torch.cat([p[0] for p in pieces])
                dst_local = torch.cat([p[1] for p in pieces])
                eid = torch.cat([p[2] for p in pieces])
                sorted_ids, perm = lookup[src]
                src_local = perm[torch.searchsorted(sorted_ids, src_global)]
            else:
                src_local = dst_local = eid = torch.empty(0, dtype=torch.long)
            store = data[edge_type]
            out[edge_type].edge_index = torch.stack([src_local, dst_local])
            out[edge_type].e_id = eid
            for key, value in store.items():
                if key in ("edge_index", "e_id"):
                    continue
                if torch.is_tensor(value) and store.is_edge_attr(key):
                    out[edge_type][key] = value[eid.to(value.device)]
        return out


def _check_seeds(node_type: str, ids, num_nodes: Dict[str, int]) -> torch.Tensor:
    if node_type not in num_nodes:
        raise HgimbError(f"seed node type '{node_type}' is not in the graph (types: {', '.join(num_nodes)})")
    ids = torch.as_tensor(ids, dtype=torch.long).cpu().reshape(-1)
    if ids.numel():
        if int(ids.min()) < 0 or int(ids.max()) >= num_nodes[node_type]:
            raise HgimbError(f"seed ids of '{node_type}' must be in 0..{num_nodes[node_type] - 1}")
        if torch.unique(ids).numel() != ids.numel():
            raise HgimbError(f"seed ids of '{node_type}' repeat; pass distinct seeds (torch.unique) and map back")
    return ids


# ---------------------------------------------------------------------------- PyG sampler
class PygNeighborSampler:
    """PyG's ``NeighborLoader`` machinery (pyg-lib / torch-sparse kernels): one loader per
    (seed type, fanout), its ``collate_fn`` + ``filter_fn`` applied to the requested seeds, so
    the subgraph is exactly what ``NeighborLoader`` yields. A batch with seeds of several node
    types goes to the torch sampler (``NeighborLoader`` takes one input type). PyG's kernels
    draw from their own random state (seeded by ``torch.manual_seed``, which the trainer calls),
    not from ``generator``."""

    backend = "pyg"

    def __init__(self, data):
        self.data = data
        self._loaders = {}
        self._fallback = HeteroNeighborSampler(data)

    def _loader(self, node_type: str, fanout: Tuple[int, ...]):
        key = (node_type, fanout)
        if key not in self._loaders:
            from torch_geometric.loader import NeighborLoader

            # input_nodes=(type, None): every node of the type, so an input index is a node id
            self._loaders[key] = NeighborLoader(self.data, num_neighbors=list(fanout), input_nodes=(node_type, None),
                                                batch_size=1, shuffle=False, filter_per_worker=False)
        return self._loaders[key]

    def sample(self, seeds: Dict[str, torch.Tensor], fanout: Sequence[int],
               generator: Optional[torch.Generator] = None):
        seeds = {t: _check_seeds(t, ids, self._fallback.num_nodes) for t, ids in seeds.items()}
        busy = [t for t, ids in seeds.items() if ids.numel()]
        if len(busy) != 1 or not fanout:
            return self._fallback.sample(seeds, fanout, generator)
        node_type = busy[0]
        loader = self._loader(node_type, tuple(int(f) for f in fanout))
        out = loader.filter_fn(loader.collate_fn(seeds[node_type]))
        for t, ids in seeds.items():
            if t != node_type:
                out[t].batch_size = 0
        for t in self.data.node_types:  # types the sampler never reached: present, empty
            if "n_id" not in out[t]:
                out[t].n_id = torch.empty(0, dtype=torch.long)
                out[t].num_nodes = 0
        for edge_type in self.data.edge_types:
            if "edge_index" not in out[edge_type]:
                out[edge_type].edge_index = torch.empty(2, 0, dtype=torch.long)
        return out
