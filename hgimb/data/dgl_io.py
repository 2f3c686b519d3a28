"""DGL interop: hgimb Tasks <-> DGL heterographs, and the ``dgl:<file>`` dataset prefix.

DGL is optional (``pip install -e ".[dgl]"``). Every entry point imports it through
:func:`import_dgl`, which sets ``DGLBACKEND=pytorch`` first (otherwise DGL writes
``~/.dgl/config.json`` on import) and turns a missing or broken install into a one-line
:class:`HgimbError` that says how to install it (the CLIs exit 2).

The graph convention (DGL's own: its built-in datasets use the same names)
- node types and canonical edge types ``(src, rel, dst)`` map one to one to the ``HeteroData``
  of the Task (relation names may repeat across (src, dst) pairs, as in HGB's ``to_paper``);
- ``ndata["feat"]``: node features (a type without it gets learnable embeddings in the models);
- ``ndata["label"]`` on the labelled (target) node types: the class id, ``-1`` = unlabelled;
- ``ndata["train_mask"]``, ``["val_mask"]``, ``["test_mask"]``: the official split (optional;
  without masks hgimb draws a stratified split, ``--split`` / ``--imbalance-ratio`` as usual);
- ``edata["weight"]`` <-> ``edge_weight``, ``edata["feat"]`` <-> ``edge_attr``; any other
  tensor of an edge store (one row per edge) keeps its name both ways.

The feature / label / weight names are loader options (``--dataset-option feature_key=h``).
Class names are not stored in a DGLGraph: they are ``class0, class1, ...`` unless given.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import HgimbError
from ..params import Param, Range
from .registry import register_prefix
from .task import SPLITS, Task

INSTALL_HINT = 'pip install -e ".[dgl]" (dgl 1.1.3: the newest DGL that imports on torch 2.x here; README, "DGL")'
MASKS = {part: f"{part}_mask" for part in SPLITS}
EDGE_NAMES = {"edge_weight": "weight", "edge_attr": "feat"}  # hgimb (PyG) name -> DGL name
PARAMS = (  # dgl:<file> options
    Param("feature_key", str, "feat", "ndata key of the node features"),
    Param("label_key", str, "label", "ndata key of the labels (-1 = unlabelled)"),
    Param("weight_key", str, "weight", "edata key of the edge weights"),
    Param("target", str, "", "labelled node type(s), comma-separated (default: the types with labels)"),
    Param("graph_index", int, 0, "which graph of the file", Range(0)),
)


def import_dgl(what: str = "DGL interop"):
    """The ``dgl`` module, or a one-line HgimbError saying how to install it."""
    os.environ.setdefault("DGLBACKEND", "pytorch")
    try:
        import dgl  # noqa: WPS433 (optional dependency)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] != "dgl":
            raise HgimbError(f"{what} needs DGL, whose import failed: {exc}; {INSTALL_HINT}") from None
        raise HgimbError(f"{what} needs DGL, which is not installed: {INSTALL_HINT}") from None
    except (ImportError, OSError, FileNotFoundError, RuntimeError) as exc:  # e.g. dgl 2.x on a newer torch
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HgimbError(f"{what} needs a DGL that imports with torch {torch.__version__} ({first}); "
                         f"{INSTALL_HINT}") from None
    return dgl


# ============================================================================ Task -> DGL
def to_dgl(task: Task, feature_key: str = "feat", label_key: str = "label", weight_key: str = "weight"):
    """The Task's graph as a DGL heterograph with features, labels, split masks and edge data."""
    dgl = import_dgl("to_dgl")
    if task.kind != "node":
        raise HgimbError(f"to_dgl converts node tasks (one graph); '{task.name}' is a {task.kind} task")
    data = task.data
    num_nodes = {t: int(data[t].num_nodes) for t in data.node_types}
    edges = {}
    for et in data.edge_types:
        ei = data[et].edge_index
        edges[tuple(et)] = (ei[0], ei[1])
    g = dgl.heterograph(edges, num_nodes_dict=num_nodes, idtype=torch.int64)
    for t in data.node_types:
        x = getattr(data[t], "x", None)
        if x is not None:
            g.nodes[t].data[feature_key] = x
    offsets = task.type_offsets()
    for t in task.target_types:
        n = num_nodes[t]
        rows = slice(offsets[t], offsets[t] + n)
        g.nodes[t].data[label_key] = task.y[rows].clone()
        for part in (p for p in SPLITS if p in task.split):  # no split, no masks
            mask = torch.zeros(task.num_items, dtype=torch.bool)
            mask[task.split[part]] = True
            g.nodes[t].data[MASKS[part]] = mask[rows]
    rename = {**EDGE_NAMES, "edge_weight": weight_key}
    for et in data.edge_types:
        store = data[et]
        m = store.edge_index.size(1)
        for key, value in store.items():
            if key == "edge_index" or not torch.is_tensor(value) or value.dim() == 0 or value.size(0) != m:
                continue
            g.edges[tuple(et)].data[rename.get(key, key)] = value
    return g


# ============================================================================ DGL -> Task
def _item_split(g, targets: Sequence[str], offsets: Dict[str, int], where: str, y: torch.Tensor) -> Dict[str, torch.Tensor]:
    present = {part for part in SPLITS for t in targets if MASKS[part] in g.nodes[t].data}
    if not present:
        return {}  # no official split: make_split draws a stratified one
    split = {}
    for part in SPLITS:
        idx = []
        for t in targets:
            mask = g.nodes[t].data.get(MASKS[part])
            if mask is None:
                continue
            if mask.dim() != 1 or mask.dtype not in (torch.bool, torch.uint8, torch.int8, torch.int32, torch.int64):
                raise HgimbError(f"{where}: ndata['{MASKS[part]}'] of node type '{t}' must be a 1-D boolean mask, "
                                 f"got {tuple(mask.shape)} {mask.dtype}")
            idx.append(mask.bool().nonzero().view(-1) + offsets[t])
        split[part] = torch.cat(idx) if idx else torch.empty(0, dtype=torch.long)
        bad = split[part][y[split[part]] < 0]
        if bad.numel():
            t, local = _locate(int(bad[0]), targets, offsets)
            raise HgimbError(f"{where}: node {local} of type '{t}' is in {MASKS[part]} but has no label "
                             f"(label -1); fix its label or its mask")
    return split


def _locate(item: int, targets: Sequence[str], offsets: Dict[str, int]):
    t = [t for t in targets if offsets[t] <= item][-1]
    return t, item - offsets[t]


def from_dgl(g, name: str = "dgl", class_names: Optional[Sequence[str]] = None, target: str | Sequence[str] = "",
             feature_key: str = "feat", label_key: str = "label", weight_key: str = "weight",
             source: str = "DGLGraph") -> Task:
    """A node Task from a DGL heterograph that follows the module's convention.

    ``target``: the labelled node type(s) (comma-separated); default every type with
    ``ndata[label_key]``. Labels are class ids ``0..C-1`` (``-1`` = unlabelled); ``C`` is
    ``len(class_names)`` when given, else the largest label + 1.
    """
    from torch_geometric.data import HeteroData

    dgl = import_dgl("from_dgl")
    where = source
    if not isinstance(g, dgl.DGLGraph):
        raise HgimbError(f"from_dgl needs a DGLGraph, got {type(g).__name__}")
    if g.batch_size > 1:
        raise HgimbError(f"{where}: a batched DGLGraph of {g.batch_size} graphs; give one graph (dgl.unbatch)")
    ntypes = list(g.ntypes)
    if isinstance(target, str):
        targets = [t.strip() for t in target.split(",") if t.strip()]
    else:
        targets = list(target)
    if targets:
        unknown = [t for t in targets if t not in ntypes]
        if unknown:
            raise HgimbError(f"{where}: target node type '{unknown[0]}' is not in the graph; node types: {', '.join(ntypes)}")
        missing = [t for t in targets if label_key not in g.nodes[t].data]
        if missing:
            raise HgimbError(f"{where}: node type '{missing[0]}' has no ndata['{label_key}']; put the labels there "
                             f"(-1 = unlabelled) or name the label field with --dataset-option label_key=NAME")
    else:
        targets = [t for t in ntypes if label_key in g.nodes[t].data]
        if not targets:
            raise HgimbError(f"{where}: no node type has ndata['{label_key}']; put the class ids there (-1 = unlabelled) "
                             f"or name the label field with --dataset-option label_key=NAME")
    data = HeteroData()
    for t in ntypes:
        data[t].num_nodes = int(g.num_nodes(t))
        x = g.nodes[t].data.get(feature_key)
        if x is not None:
            if x.dim() == 1:
                x = x.view(-1, 1)
            if x.dim() != 2:
                raise HgimbError(f"{where}: ndata['{feature_key}'] of node type '{t}' has shape {tuple(x.shape)}; "
                                 f"node features must be [num_nodes, dim]")
            if not x.is_floating_point():
                x = x.float()
            data[t].x = x
    rename = {v: k for k, v in EDGE_NAMES.items()}
    rename[weight_key] = "edge_weight"
    for cet in g.canonical_etypes:
        src, dst = g.edges(etype=cet, order="eid")
        store = data[cet]
        store.edge_index = torch.stack([src.long(), dst.long()])
        for key, value in g.edges[cet].data.items():
            new = rename.get(key, key)
            if new == "edge_weight":
                if value.dim() != 1 and not (value.dim() == 2 and value.size(1) == 1):
                    raise HgimbError(f"{where}: edata['{key}'] of edge type {cet} has shape {tuple(value.shape)}; "
                                     f"an edge weight is one number per edge")
                value = value.reshape(-1).float()
            store[new] = value
    offsets, start, ys = {}, 0, []
    for t in targets:
        y = g.nodes[t].data[label_key]
        if y.dim() == 2 and y.size(1) == 1:
            y = y.view(-1)
        if y.dim() != 1:
            raise HgimbError(f"{where}: ndata['{label_key}'] of node type '{t}' has shape {tuple(y.shape)}; hgimb needs "
                             f"one class id per node (multi-label targets are not supported)")
        if y.is_floating_point():
            frac = torch.isnan(y) | (y != torch.round(y))
            if bool(frac.any()):
                i = int(frac.nonzero()[0])
                raise HgimbError(f"{where}: node {i} of type '{t}' has label {float(y[i])!r}; labels are class ids "
                                 f"0, 1, ... (-1 = unlabelled)")
        y = y.long()
        bad = y < -1
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise HgimbError(f"{where}: node {i} of type '{t}' has label {int(y[i])}; labels are class ids 0, 1, ... "
                             f"(-1 = unlabelled)")
        offsets[t] = start
        start += y.numel()
        ys.append(y)
    y = torch.cat(ys) if len(ys) > 1 else ys[0]
    num_classes = int(y.max()) + 1 if y.numel() and int(y.max()) >= 0 else 0
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if num_classes > len(class_names):
            i = int((y >= len(class_names)).nonzero()[0])
            t, local = _locate(i, targets, offsets)
            raise HgimbError(f"{where}: node {local} of type '{t}' has label {int(y[i])} but only "
                             f"{len(class_names)} class names were given")
    else:
        class_names = [f"class{c}" for c in range(num_classes)]
    split = _item_split(g, targets, offsets, where, y)
    meta = {"source": source, "format": "dgl", "official_split": bool(split),
            "num_nodes": {t: int(g.num_nodes(t)) for t in ntypes},
            "num_edges": {"__".join(cet): int(g.num_edges(cet)) for cet in g.canonical_etypes}}
    return Task(name=name, kind="node", class_names=class_names, y=y, split=split, data=data,
                target_types=targets, item_ids=None, meta=meta)


def save_dgl(task: Task, path: str | os.PathLike, **keys) -> Path:
    """``dgl.save_graphs(path, [to_dgl(task)])``: a file the ``dgl:<path>`` dataset reads back."""
    dgl = import_dgl("save_dgl")
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    dgl.save_graphs(str(path), [to_dgl(task, **keys)])
    return path


def read_dgl(path: str | os.PathLike, graph_index: int = 0, **kwargs) -> Task:
    """A node Task from graph ``graph_index`` of a ``dgl.save_graphs`` file (see :func:`from_dgl`)."""
    dgl = import_dgl(f"dataset 'dgl:{path}'")
    path = Path(path).expanduser()
    if not path.is_file():
        raise HgimbError(f"DGL graph file {path} not found; write one with dgl.save_graphs(path, [g])")
    try:
        graphs, _ = dgl.load_graphs(str(path))
    except Exception as exc:  # DGL raises DGLError / RuntimeError / OSError for foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HgimbError(f"{path}: not a file written by dgl.save_graphs ({type(exc).__name__}: {first[:200]})") from None
    if not 0 <= graph_index < len(graphs):
        raise HgimbError(f"{path} holds {len(graphs)} graph(s); graph_index={graph_index} is out of range")
    kwargs.setdefault("name", path.stem)
    return from_dgl(graphs[graph_index], source=str(path), **kwargs)


@register_prefix("dgl", "a DGLGraph saved by dgl.save_graphs: ndata feat / label (-1 unlabelled) / train_mask ... (docs/interop.md)",
                 PARAMS)
def load_dgl_file(root, path: str, graph_index: int, **options) -> Task:
    """``dgl:<file>``: a relative path is tried from the working directory, then from the data root."""
    return read_dgl(resolve_path(root, path), graph_index=graph_index, name=f"dgl:{path}", **options)


def resolve_path(root, path: str) -> Path:
    """``path`` from the working directory, else under the data root (as ``hgb:<path>``)."""
    where = Path(path).expanduser()
    if not where.exists() and not where.is_absolute() and (Path(root).expanduser() / where).exists():
        where = Path(root).expanduser() / where
    return where
