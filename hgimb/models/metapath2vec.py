"""metapath2vec (Dong et al., KDD 2017): skip-gram embeddings from metapath-guided random walks.

Two uses:
* the registered model ``metapath2vec``: ``encode`` returns frozen, standardised embeddings of
  the target items (one ``dim``-wide block per metapath, concatenated; by default the single
  covering metapath, e.g. movie-actor-movie-director-movie-writer-movie); the trainer fits only
  the linear head, i.e. a logistic regression on the embeddings (the usual evaluation protocol).
  Options: ``metapaths``, ``dim`` (default ``hidden``), ``seed`` (default: torch's initial seed,
  i.e. the run seed when the trainer seeded torch), and the walk parameters of WALK_DEFAULTS;
* :func:`metapath2vec_features` (``--features metapath2vec``): a Task whose featureless node
  types get the embeddings as ``x``, so any GNN starts from structural features instead of
  learnable ids (Freebase has no attributes at all).

Why not PyG's ``MetaPath2Vec``: it samples with the global RNG (results depend on whatever ran
before; here walks come from an explicit ``torch.Generator``), starts walks only at the
metapath's first node type (actors of Freebase would only ever be context), and routes dead
ends to a shared dummy node that becomes a context of unrelated walks. The walker below is
vectorised (all walkers step at once through CSR ``rowptr`` + random offsets, no loop over
nodes) and needs neither torch-cluster nor pyg-lib. The objective is PyG's negative-sampling
skip-gram (``MetaPath2Vec.loss``: one embedding table, positives = nodes at most
``context_size - 1`` steps apart on a walk), computed per walk instead of per window (see
:func:`_train_skipgram`: 4x less memory traffic, which bounds CPU speed) with heterogeneous
negatives (each negative has the node type of some position of its walk, as in metapath2vec++)
shared by the positions of a walk. Timings and macro-F1 on Freebase: BENCHMARKS.md section 4
(OMP_WAIT_POLICY=PASSIVE matters: spinning OpenMP threads slow the walks severalfold).

Embeddings are cached with :func:`hgimb.data.cache.load_or_build`, keyed by the graph's content
(node counts and the metapath's edge lists), the metapath, the seed, ``dim`` and every walk /
training parameter.
"""
from __future__ import annotations

import copy
import hashlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.index import index2ptr

from ..data.cache import cache_key, load_or_build
from ..errors import HgimbError
from .base import GraphModel, seed_count
from .metapaths import EdgeType, check_metapath, default_metapaths, metapath_name, parse_metapaths
from ..params import Param, Range, defaults, validate
from .registry import register_model

CACHE_VERSION = 1
WALK_PARAMS = (
    Param("walk_length", int, 20, "steps per random walk", Range(1)),
    Param("context_size", int, 5, "skip-gram window (nodes)", Range(2)),
    Param("walks_per_node", int, 5, "walks started at each node", Range(1)),
    Param("num_negative", int, 5, "negative samples per positive pair", Range(1)),
    Param("epochs", int, 1, "skip-gram passes over the walks", Range(1)),
    Param("lr", float, 0.01, "skip-gram Adam learning rate", Range(0, low_open=True)),
    Param("batch_walks", int, 2048, "walks per skip-gram step", Range(1)),
)
WALK_DEFAULTS = defaults(WALK_PARAMS)
MODEL_PARAMS = (  # --model-option parameters of the metapath2vec model
    Param("metapaths", None, None, "metapaths to walk (--metapaths; default: one covering metapath)", none=True),
    Param("dim", int, None, "embedding width per metapath (default: --hidden)", Range(1), none=True),
    Param("embedding_dim", int, None, "the same as dim", Range(1), none=True),
    Param("seed", int, None, "walk seed (default: torch's initial seed, the run seed)", Range(0), none=True),
    *WALK_PARAMS,
)


# ---------------------------------------------------------------------------- walks
def relation_csr_torch(data, edge_type: EdgeType) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(rowptr, col)`` of one relation, rows = source nodes."""
    ei = data[edge_type].edge_index.cpu()  # walks run on the CPU
    num_src = int(data[edge_type[0]].num_nodes)
    order = torch.argsort(ei[0] * int(data[edge_type[2]].num_nodes) + ei[1])
    src, col = ei[0][order], ei[1][order]
    rowptr = index2ptr(src, num_src)
    return rowptr, col.contiguous()


def rotate(metapath: Sequence[EdgeType], node_type: str) -> List[EdgeType]:
    """The cyclic metapath started at the first step leaving ``node_type``."""
    k = next(i for i, et in enumerate(metapath) if et[0] == node_type)
    return list(metapath[k:]) + list(metapath[:k])


def metapath_walks(data, metapath: Sequence[EdgeType], start: torch.Tensor, walk_length: int,
                   generator: torch.Generator, csr: Optional[Dict] = None) -> torch.Tensor:
    """Random walks following ``metapath`` (cycled) from the nodes ``start`` (of type
    ``metapath[0][0]``): ``[len(start), walk_length + 1]`` local node ids, ``-1`` after a dead
    end (a node without a neighbour along the next relation). Step ``i`` takes relation
    ``metapath[i % len(metapath)]`` and picks a uniformly random neighbour for every walker at once."""
    csr = csr if csr is not None else {}
    walk = torch.full((start.numel(), walk_length + 1), -1, dtype=torch.long)
    cur = start.clone()
    walk[:, 0] = cur
    for step in range(walk_length):
        et = metapath[step % len(metapath)]
        if et not in csr:
            csr[et] = relation_csr_torch(data, et)
        rowptr, col = csr[et]
        alive = cur >= 0
        safe = cur.clamp(min=0)
        deg = rowptr[safe + 1] - rowptr[safe]
        alive &= deg > 0
        offset = (torch.rand(cur.numel(), generator=generator) * deg).long().clamp(max=(deg - 1).clamp(min=0))
        nxt = col[(rowptr[safe] + offset).clamp(max=max(col.numel() - 1, 0))] if col.numel() else safe
        cur = torch.where(alive, nxt, torch.full_like(cur, -1))
        walk[:, step + 1] = cur
    return walk


# ---------------------------------------------------------------------------- skip-gram
def _graph_fingerprint(data, metapath: Sequence[EdgeType]) -> str:
    h = hashlib.sha256()
    for nt in sorted({et[0] for et in metapath} | {et[2] for et in metapath}):
        h.update(f"{nt}:{int(data[nt].num_nodes)};".encode())
    for et in sorted(set(metapath)):
        ei = data[et].edge_index.contiguous().cpu()
        h.update(repr(et).encode())
        h.update(ei.numpy().tobytes())
    return h.hexdigest()[:32]


def _train_skipgram(data, metapath: List[EdgeType], seed: int, dim: int, walk_length: int,
                    context_size: int, walks_per_node: int, num_negative: int, epochs: int,
                    lr: float, batch_walks: int) -> Dict[str, torch.Tensor]:
    """Skip-gram with negative sampling over whole walks.

    Every pair of positions at most ``context_size - 1`` apart in a walk is a positive pair;
    each walk draws ``num_negative * (context_size - 1)`` negative nodes (each of the node type
    of a random position of the walk, i.e. heterogeneous negatives) shared by all its positions.
    Rows are gathered once per walk rather than once per (window, pair) as in PyG's
    ``MetaPath2Vec``: about 4x fewer memory reads for more pairs, which is what bounds the speed
    on CPU. Dense Adam on the embedding table (SparseAdam's per-step coalescing was slower here).
    """
    types = sorted({et[0] for et in metapath})
    counts = {nt: int(data[nt].num_nodes) for nt in types}
    offsets, total = {}, 0
    for nt in types:
        offsets[nt] = total
        total += counts[nt]
    gen = torch.Generator().manual_seed(int(seed))
    weight = nn.Parameter(torch.empty(total, dim))
    with torch.no_grad():
        weight.normal_(0.0, 1.0 / dim ** 0.5, generator=gen)
    optimizer = torch.optim.Adam([weight], lr=lr)
    type_id = {nt: i for i, nt in enumerate(types)}
    type_count = torch.tensor([counts[nt] for nt in types])
    type_offset = torch.tensor([offsets[nt] for nt in types])
    # per start type: the rotated metapath and the node type at every walk position
    plans = []
    for nt in types:
        path = rotate(metapath, nt)
        pos_types = [nt] + [path[i % len(path)][2] for i in range(walk_length)]
        plans.append((nt, path, torch.tensor([type_id[t] for t in pos_types])))
    csr: Dict = {}
    num_neg = max(int(num_negative) * (int(context_size) - 1), 1)
    for _ in range(int(epochs)):
        walks, walk_types = [], []
        for nt, path, pos_types in plans:
            start = torch.arange(counts[nt]).repeat(int(walks_per_node))
            w = metapath_walks(data, path, start, walk_length, gen, csr)
            walks.append(torch.where(w >= 0, w + type_offset[pos_types], torch.full_like(w, -1)))
            walk_types.append(pos_types.expand(w.size(0), -1))
        walks, walk_types = torch.cat(walks), torch.cat(walk_types)
        order = torch.randperm(walks.size(0), generator=gen)  # start types mixed in every batch
        walks, walk_types = walks[order], walk_types[order]
        for b in range(0, walks.size(0), int(batch_walks)):
            w, wt = walks[b: b + batch_walks], walk_types[b: b + batch_walks]
            valid = w >= 0
            rows = F.embedding(w.clamp(min=0), weight)  # [B, L+1, d]
            pos = [((rows[:, :-o] * rows[:, o:]).sum(-1))[valid[:, :-o] & valid[:, o:]]
                   for o in range(1, min(int(context_size), w.size(1)))]
            pos = torch.cat(pos)
            pick = torch.randint(0, w.size(1), (w.size(0), num_neg), generator=gen)
            neg_types = wt.gather(1, pick)
            neg_nodes = (torch.rand(neg_types.shape, generator=gen) * type_count[neg_types]).long() \
                + type_offset[neg_types]
            neg = torch.bmm(rows, F.embedding(neg_nodes, weight).transpose(1, 2))[valid]  # [valid, K]
            if pos.numel() == 0:
                continue
            loss = -F.logsigmoid(pos).mean() - F.logsigmoid(-neg).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    weight = weight.detach()
    return {nt: weight[offsets[nt]: offsets[nt] + counts[nt]].clone() for nt in types}


def metapath2vec_embeddings(data, metapath: Sequence[EdgeType], seed: int = 0, dim: int = 64,
                            cache: bool = True, **params) -> Dict[str, torch.Tensor]:
    """Skip-gram embeddings ``{node_type: [num_nodes, dim]}`` of every node type on the cyclic
    ``metapath``; walks start at every node of every type on it (``walks_per_node`` each).

    ``params`` override :data:`WALK_DEFAULTS` (walk_length, context_size, walks_per_node,
    num_negative, epochs, lr, batch_walks). Cached on disk unless ``cache=False``."""
    metapath = check_metapath(metapath, data)
    if metapath[0][0] != metapath[-1][2]:
        raise HgimbError(
            f"metapath2vec needs a cyclic metapath (same start and end type), got {metapath_name(metapath)}; "
            f"e.g. {metapath_name(metapath)}-...-{metapath[0][0]}"
        )
    cfg = validate(WALK_PARAMS, params, "metapath2vec walks", flag="metapath2vec option")
    if cfg["walk_length"] + 1 < cfg["context_size"]:
        raise HgimbError(f"metapath2vec walk_length {cfg['walk_length']} is shorter than context_size {cfg['context_size']} - 1")

    def build():
        return _train_skipgram(data, list(metapath), int(seed), int(dim), **cfg)

    if not cache:
        return build()
    key = cache_key(CACHE_VERSION, _graph_fingerprint(data, metapath), [list(et) for et in metapath],
                    int(seed), int(dim), cfg)
    return load_or_build("metapath2vec", key, build)


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per column (no labels involved)."""
    return (x - x.mean(0)) / x.std(0).clamp(min=1e-6)


def covering_metapath(data, target: str) -> List[EdgeType]:
    """``T-x1-T-x2-T-...``: one cyclic metapath through every type ``x`` linked to and from the
    target type ``T`` (Freebase: movie-actor-movie-director-movie-writer-movie)."""
    path = []
    for (s, r, d) in data.edge_types:
        if s == target and d != target:
            back = [et for et in data.edge_types if et[0] == d and et[2] == target]
            if back and not any(et[2] == d for et in path):
                path += [(s, r, d), back[0]]
    if not path:
        raise HgimbError(f"no node type links to and from '{target}'; give --metapaths for metapath2vec")
    return path


def _resolve(task, metapaths) -> List[List[EdgeType]]:
    if metapaths is None:
        return default_metapaths(task.name, task.data, target=task.target)
    if isinstance(metapaths, str):
        return parse_metapaths(metapaths, task.data)
    return parse_metapaths(list(metapaths), task.data)


# ---------------------------------------------------------------------------- features
def metapath2vec_features(task, metapaths=None, seed: int = 0, dim: int = 64, **params):
    """A copy of ``task`` whose featureless node types carry metapath2vec embeddings as ``x``
    (standardised; types visited by several metapaths get the blocks concatenated).

    ``metapaths``: a ``--metapaths`` string or list; default: one covering cyclic metapath through
    every type adjacent to the target (:func:`covering_metapath`). Types with features keep them;
    types no metapath visits stay featureless. The original task is not modified."""
    paths = [covering_metapath(task.data, task.target)] if metapaths is None else _resolve(task, metapaths)
    blocks: Dict[str, List[torch.Tensor]] = {}
    for path in paths:
        for nt, emb in metapath2vec_embeddings(task.data, path, seed=seed, dim=dim, **params).items():
            blocks.setdefault(nt, []).append(emb)
    data = copy.copy(task.data)
    filled = []
    for nt in data.node_types:
        if getattr(task.data[nt], "x", None) is None and nt in blocks:
            data[nt].x = standardize(torch.cat(blocks[nt], 1))
            filled.append(nt)
    new = copy.copy(task)
    new.data = data
    new.meta = {**task.meta, "features": "metapath2vec", "feature_metapaths": [metapath_name(p) for p in paths],
                "metapath2vec_types": filled}
    return new


# ---------------------------------------------------------------------------- model
class MetaPath2VecModel(GraphModel):
    """Frozen metapath2vec embeddings of the target items + the trainable linear head."""

    num_hops = 0  # an item's own (precomputed) embedding row

    def __init__(self, task, cfg):
        options = dict(cfg.options)  # validated against MODEL_PARAMS by the registry
        dim = next((d for d in (options.pop("dim"), options.pop("embedding_dim")) if d is not None), cfg.hidden)
        seed = options.pop("seed")
        seed = torch.initial_seed() % (2 ** 31) if seed is None else seed
        spec = options.pop("metapaths")
        # default: the one covering metapath (shares its cache entry with --features metapath2vec)
        paths = [covering_metapath(task.data, task.target)] if not spec else _resolve(task, spec)
        params = options  # the walk parameters
        blocks = []
        for path in paths:
            emb = metapath2vec_embeddings(task.data, path, seed=seed, dim=dim, **params)
            missing = [t for t in task.target_types if t not in emb]
            if missing:
                raise HgimbError(
                    f"metapath {metapath_name(path)} does not visit target type(s) {', '.join(missing)}; "
                    f"give --metapaths through them"
                )
            blocks.append(torch.cat([emb[t] for t in task.target_types], 0))
        items = standardize(torch.cat(blocks, 1))
        super().__init__(items.size(1), task.num_classes)
        self.target_types = list(task.target_types)
        self.metapaths = paths
        self.register_buffer("embeddings", items)
        sizes = [int(task.data[t].num_nodes) for t in self.target_types]
        self._offsets = dict(zip(self.target_types, np.cumsum([0] + sizes[:-1]).tolist()))

    def encode(self, data) -> torch.Tensor:
        parts = []
        for t in self.target_types:
            n_id = getattr(data[t], "n_id", None)
            block = self.embeddings[self._offsets[t]: self._offsets[t] + int(data[t].num_nodes)] \
                if n_id is None else self.embeddings[self._offsets[t] + n_id[: seed_count(data, t)]]
            parts.append(block)
        return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


@register_model("metapath2vec", kinds=("node",), params=MODEL_PARAMS,
                help="metapath2vec (Dong et al. KDD 2017) embeddings + logistic regression (--metapaths)",
                # embedding width 128 and a plain logistic-regression head (configs/hgb/*-metapath2vec.yaml)
                defaults={"hidden": 128, "dropout": 0.0, "lr": 0.01, "weight_decay": 0.0, "epochs": 300})
def build_metapath2vec(task, cfg):
    return MetaPath2VecModel(task, cfg)
