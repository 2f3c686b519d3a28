"""NetworkX interop: ``from_networkx(G)`` / ``to_networkx(task)`` and the ``nx:<file>`` dataset prefix.

The attribute convention (every name can be changed: a keyword argument of
:func:`from_networkx`, or ``--dataset-option <option>=<attribute>`` for ``nx:<file>``)

===============  ============  ==========================================================
attribute        option        meaning
===============  ============  ==========================================================
``node_type``    node_type     node attribute: the node's type (absent on every node = one
                               type ``node``: a homogeneous graph)
``y``            label         node attribute: its class; absent, empty or ``-1`` =
                               unlabelled. Integers are class ids ``0..C-1``; any other
                               value (``"Theory"``) is a class name (classes sorted by name)
``x``            features      node attribute: its features, a list of numbers or a string
                               of numbers (``"0.1,0.2"``, ``"[0.1 0.2]"``; GraphML and GEXF
                               hold no lists); all nodes of a type have them or none does
                               (a type without them gets learnable embeddings)
``split``        split         node attribute, optional: ``train`` / ``val`` / ``test``, an
                               official split; without it hgimb draws a stratified one
                               (``--split``, ``--imbalance-ratio`` for a long-tailed one)
``edge_type``    edge_type     edge attribute: the relation (absent on every edge = ``to``);
                               edge types are ``(src node type, relation, dst node type)``
``weight``       weight        edge attribute, optional: a positive number (RGCN's weighted
                               mean); kept only for relations where some weight is not 1
===============  ============  ==========================================================

The labelled node types (those with a label, or ``target=``) are the Task's target types; items
are their nodes in graph order, and ``predictions.csv`` names them by their NetworkX ids.
Undirected graphs get every edge in both directions; directed graphs keep their edges as they
are (``reverse_edges=true`` adds ``rev_<relation>`` edges the other way, so that messages reach
a type that only has outgoing edges). Parallel edges of a multigraph are all kept.

Files (``nx:<file>``, by extension): ``.graphml`` / ``.xml`` (``nx.read_graphml``), ``.gexf``
(``nx.read_gexf``), or an edge list ``.edgelist`` / ``.edges`` / ``.txt`` / ``.tsv`` / ``.csv``
(whitespace-separated ``u v``, optionally ``u v {python dict of edge attributes}`` as
``nx.write_edgelist`` writes, or ``u v relation [weight]``; ``#`` comments; undirected unless
``directed=true``). Node attributes for an edge list (or to complete a GraphML/GEXF file) come
from ``nodes=<csv or tsv file>``: a header row, node ids in the first column, one column per
attribute (``id,node_type,y,x``). Parsed files are cached (:mod:`hgimb.data.cache`).

Bad input gets a one-line :class:`HgimbError` that names the file and the node or edge.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import HgimbError
from ..params import Param, defaults
from . import cache as _cache
from .dgl_io import resolve_path
from .download import CACHE
from .registry import register_prefix
from .task import SPLITS, Task

FORMAT_VERSION = 1
DEFAULT_NODE_TYPE = "node"
DEFAULT_RELATION = "to"
KEYS = {"node_type": "node_type", "label": "y", "features": "x", "split": "split", "edge_type": "edge_type",
        "weight": "weight"}
PARAMS = (  # nx:<file> options; the attribute names default to KEYS
    *(Param(key, str, attribute, f"the {attribute!r} attribute's name") for key, attribute in KEYS.items()),
    Param("target", str, "", "labelled node type(s), comma-separated (default: the types with labels)"),
    Param("nodes", str, "", "a csv/tsv node table adding node attributes"),
    Param("directed", bool, None, "edge lists: directed (default undirected); GraphML/GEXF: convert", none=True),
    Param("reverse_edges", bool, False, "directed graphs: add rev_<relation> edges the other way"),
    CACHE,
)
GRAPHML = (".graphml", ".xml")
GEXF = (".gexf",)
EDGELIST = (".edgelist", ".edges", ".txt", ".tsv", ".csv", ".el")
_NUMBER_SPLIT = re.compile(r"[\s,;]+")


def _import_nx():
    import networkx as nx

    return nx


def _missing(values: pd.Series) -> np.ndarray:
    """Absent / None / NaN / empty-string entries."""
    miss = values.isna().to_numpy()
    as_text = values.astype(str).str.strip()
    return miss | (as_text == "").to_numpy()


def _categories(values: pd.Series, default: str, partly_missing) -> tuple:
    """``(codes, names)`` of a node-type / relation attribute in order of first appearance; absent
    everywhere = the one category ``default``; absent on some = ``HgimbError(partly_missing(i))``
    for the first such element ``i``."""
    miss = _missing(values)
    if miss.all():
        return np.zeros(len(values), dtype=np.int64), [default]
    if miss.any():
        raise HgimbError(partly_missing(int(np.flatnonzero(miss)[0])))
    codes, uniques = pd.factorize(values.astype(str).str.strip())
    return codes, [str(u) for u in uniques]


def _node_name(node) -> str:
    return repr(node) if isinstance(node, str) else str(node)


# ============================================================================ NetworkX -> Task
def from_networkx(G, name: str = "networkx", *, node_type: str = "node_type", label: str = "y", features: str = "x",
                  split: str = "split", edge_type: str = "edge_type", weight: str = "weight",
                  target: str | Sequence[str] = "", reverse_edges: bool = False,
                  class_names: Optional[Sequence[str]] = None, source: str = "NetworkX graph") -> Task:
    """A node Task from a NetworkX graph with the module's attribute convention."""
    nx = _import_nx()
    if not isinstance(G, nx.Graph):
        raise HgimbError(f"{source}: from_networkx needs a networkx graph, got {type(G).__name__}")
    if G.number_of_nodes() == 0:
        raise HgimbError(f"{source}: the graph has no nodes")
    # NetworkX keeps attributes in one dict per node / edge: reading them out is a per-element
    # Python step by nature (networkx's own to_pandas_edgelist does the same); everything after
    # it is vectorised.
    nodes = pd.DataFrame.from_records([d for _, d in G.nodes(data=True)], columns=None)
    ids = np.fromiter(G.nodes, dtype=object, count=G.number_of_nodes())  # any hashable ids, tuples too
    nodes = nodes.reindex(range(len(ids)))
    column = lambda key: nodes[key] if key in nodes else pd.Series([None] * len(ids), dtype=object)  # noqa: E731

    # ---- node types (order of first appearance), local index within the type
    type_code, type_names = _categories(
        column(node_type), DEFAULT_NODE_TYPE,
        lambda i: f"{source}: node {_node_name(ids[i])} has no '{node_type}' attribute but other nodes do; "
                  f"give every node a type, or none (a homogeneous graph)")
    num_types = len(type_names)
    order = np.argsort(type_code, kind="stable")
    counts = np.bincount(type_code, minlength=num_types)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    local = np.empty(len(ids), dtype=np.int64)
    local[order] = np.arange(len(ids)) - starts[type_code[order]]

    # ---- labels (class order: the argument, else the graph's "class_names" as to_networkx writes it)
    if class_names is None:
        class_names = _graph_class_names(G, source)
    y_all, classes = _labels(column(label), ids, label, source, class_names)
    labelled_types = [type_names[c] for c in np.unique(type_code[y_all >= 0])]
    if isinstance(target, str):
        targets = [t.strip() for t in target.split(",") if t.strip()]
    else:
        targets = [str(t) for t in target]
    if targets:
        unknown = [t for t in targets if t not in type_names]
        if unknown:
            raise HgimbError(f"{source}: target node type '{unknown[0]}' does not occur; node types: {', '.join(type_names)}")
    else:
        targets = [t for t in type_names if t in labelled_types]
    if not targets:
        raise HgimbError(f"{source}: no node has a '{label}' attribute (its class; -1 = unlabelled); label some nodes, "
                         f"or name the label attribute with --dataset-option label=NAME")
    target_codes = [type_names.index(t) for t in targets]
    # items: the target types' nodes, type by type, in graph order
    item_nodes = np.concatenate([order[starts[c]:starts[c] + counts[c]] for c in target_codes])
    y = torch.as_tensor(y_all[item_nodes], dtype=torch.long)

    # ---- features per type
    from torch_geometric.data import HeteroData

    data = HeteroData()
    x_values = column(features)
    x_missing = _missing(x_values) if features in nodes else np.ones(len(ids), dtype=bool)
    for c, t in enumerate(type_names):
        members = order[starts[c]:starts[c] + counts[c]]
        data[t].num_nodes = int(counts[c])
        has = ~x_missing[members]
        if not has.any():
            continue
        if not has.all():
            i = members[int(np.flatnonzero(~has)[0])]
            raise HgimbError(f"{source}: node {_node_name(ids[i])} of type '{t}' has no '{features}' attribute but other "
                             f"nodes of that type do; give every node of a type features, or none")
        data[t].x = _feature_matrix(x_values.to_numpy()[members], ids[members], t, features, source)

    # ---- official split (optional node attribute)
    split_parts = _split(column(split), ids, item_nodes, y, split, source) if split in nodes else {}

    # ---- edges
    _edges(G, data, ids, type_code, type_names, local, edge_type, weight, reverse_edges, source)

    node_ids = {t: ids[order[starts[c]:starts[c] + counts[c]]] for c, t in enumerate(type_names)}
    meta = {"source": source, "format": "networkx", "official_split": bool(split_parts),
            "num_nodes": {t: int(n) for t, n in zip(type_names, counts)},
            "num_edges": {"__".join(et): int(data[et].edge_index.size(1)) for et in data.edge_types},
            "node_ids": node_ids, "directed": bool(G.is_directed())}
    return Task(name=name, kind="node", class_names=classes, y=y, split=split_parts, data=data, target_types=targets,
                item_ids=np.asarray(ids[item_nodes]), meta=meta)


def _graph_class_names(G, source: str) -> Optional[List[str]]:
    value = G.graph.get("class_names")
    if value is None:
        return None
    if isinstance(value, str):  # JSON text: what GraphML / GEXF can hold
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, (list, tuple)) or not value:
        raise HgimbError(f"{source}: graph attribute 'class_names' must be a list of class names (or its JSON text), "
                         f"got {G.graph.get('class_names')!r}")
    return [str(c) for c in value]


def _labels(values: pd.Series, ids, key: str, source: str, class_names) -> tuple:
    """Per node: class index (``-1`` unlabelled), and the class names."""
    n = len(values)
    miss = _missing(values)
    text = values.astype(str).str.strip()
    miss |= (text == "-1").to_numpy() | (text == "-1.0").to_numpy()
    y = np.full(n, -1, dtype=np.int64)
    present = np.flatnonzero(~miss)
    if not len(present):
        return y, [str(c) for c in class_names] if class_names is not None else []
    numeric = pd.to_numeric(text.iloc[present], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isnan(numeric).any():  # class ids
        bad = np.flatnonzero((numeric != np.round(numeric)) | (numeric < 0))
        if len(bad):
            i = present[bad[0]]
            raise HgimbError(f"{source}: node {_node_name(ids[i])} has {key}={values.iloc[i]!r}; a class id is an integer "
                             f">= 0 (-1 or absent = unlabelled), or use class names throughout")
        y[present] = numeric.astype(np.int64)
        num_classes = int(y.max()) + 1
        if class_names is not None:
            names = [str(c) for c in class_names]
            if num_classes > len(names):
                i = int(np.flatnonzero(y >= len(names))[0])
                raise HgimbError(f"{source}: node {_node_name(ids[i])} has class id {int(y[i])} but only {len(names)} "
                                 f"class names were given")
            return y, names
        return y, [f"class{c}" for c in range(num_classes)]
    # class names: sorted, so that the class ids do not depend on node order
    names = sorted(set(text.iloc[present]))
    if class_names is not None:
        given = [str(c) for c in class_names]
        unknown = sorted(set(names) - set(given))
        if unknown:
            i = present[int(np.flatnonzero(text.iloc[present].to_numpy() == unknown[0])[0])]
            raise HgimbError(f"{source}: node {_node_name(ids[i])} has {key}={unknown[0]!r}, not one of the given class names")
        names = given
    y[present] = pd.Index(names).get_indexer(text.iloc[present])
    return y, names


def _feature_matrix(values: np.ndarray, ids: np.ndarray, node_type: str, key: str, source: str) -> torch.Tensor:
    rows: List[np.ndarray] = []
    for value, node in zip(values, ids):  # one parse per node (strings or lists; see from_networkx)
        try:
            if isinstance(value, str):
                parts = [p for p in _NUMBER_SPLIT.split(value.strip().strip("[]()")) if p]
                row = np.asarray(parts, dtype=np.float64)
            else:
                row = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise HgimbError(f"{source}: node {_node_name(node)} has {key}={value!r}; features are a list of numbers "
                             f"or a string of numbers such as '0.1,0.2,0.3'") from None
        rows.append(row)
    dims = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    if (dims != dims[0]).any() or dims[0] == 0:
        i = int(np.flatnonzero(dims != dims[0])[0]) if (dims != dims[0]).any() else 0
        raise HgimbError(f"{source}: node {_node_name(ids[i])} of type '{node_type}' has {int(dims[i])} features, "
                         f"node {_node_name(ids[0])} has {int(dims[0])}; every node of a type needs the same number (> 0)")
    x = np.stack(rows)
    if not np.isfinite(x).all():
        i = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise HgimbError(f"{source}: node {_node_name(ids[i])} has a non-finite feature value in '{key}'")
    return torch.as_tensor(x, dtype=torch.float32)


def _split(values: pd.Series, ids, item_nodes: np.ndarray, y: torch.Tensor, key: str, source: str) -> Dict[str, torch.Tensor]:
    text = values.astype(str).str.strip().str.lower().to_numpy()
    miss = _missing(values)
    part_of = np.full(len(values), -1, dtype=np.int64)
    for p, part in enumerate(SPLITS):
        part_of[text == part] = p
    bad = np.flatnonzero((part_of < 0) & ~miss)
    if len(bad):
        i = int(bad[0])
        raise HgimbError(f"{source}: node {_node_name(ids[i])} has {key}={values.iloc[i]!r}; use train, val or test "
                         f"(or leave it out)")
    item_part = part_of[item_nodes]
    outside = np.flatnonzero((part_of >= 0) & ~np.isin(np.arange(len(values)), item_nodes))
    if len(outside):
        i = int(outside[0])
        raise HgimbError(f"{source}: node {_node_name(ids[i])} has {key}={values.iloc[i]!r} but is not of a labelled "
                         f"(target) node type")
    unlabelled = np.flatnonzero((item_part >= 0) & (y.numpy() < 0))
    if len(unlabelled):
        i = int(item_nodes[unlabelled[0]])
        raise HgimbError(f"{source}: node {_node_name(ids[i])} is in the {text[i]} split but has no label")
    if (item_part < 0).all():
        return {}
    return {part: torch.as_tensor(np.flatnonzero(item_part == p), dtype=torch.long) for p, part in enumerate(SPLITS)}


def _edges(G, data, ids, type_code, type_names, local, edge_type: str, weight: str, reverse_edges: bool, source: str):
    edge_list = list(G.edges(data=True))
    node_index = {node: i for i, node in enumerate(ids)}
    if not edge_list:
        return
    src = np.fromiter((node_index[u] for u, _, _ in edge_list), dtype=np.int64, count=len(edge_list))
    dst = np.fromiter((node_index[v] for _, v, _ in edge_list), dtype=np.int64, count=len(edge_list))
    attrs = pd.DataFrame.from_records([d for _, _, d in edge_list]).reindex(range(len(edge_list)))

    def where(i: int) -> str:
        return f"edge ({_node_name(ids[src[i]])}, {_node_name(ids[dst[i]])})"

    rel_values = attrs[edge_type] if edge_type in attrs else pd.Series([None] * len(edge_list), dtype=object)
    rel_code, rel_names = _categories(
        rel_values, DEFAULT_RELATION,
        lambda i: f"{source}: {where(i)} has no '{edge_type}' attribute but other edges do; give every edge "
                  f"a relation, or none")
    if weight in attrs:
        w_raw = attrs[weight]
        w_miss = _missing(w_raw)
        w = pd.to_numeric(w_raw.astype(str).str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        w[w_miss] = 1.0
        bad = np.flatnonzero(~np.isfinite(w) | (w <= 0))
        if len(bad):
            i = int(bad[0])
            raise HgimbError(f"{source}: {where(i)} has {weight}={w_raw.iloc[i]!r}; an edge weight is a positive number")
    else:
        w = np.ones(len(edge_list), dtype=np.float64)
    names = list(rel_names)
    if not G.is_directed():  # both directions; a self-loop once
        loop = src == dst
        src, dst = np.concatenate([src, dst[~loop]]), np.concatenate([dst, src[~loop]])
        rel_code, w = np.concatenate([rel_code, rel_code[~loop]]), np.concatenate([w, w[~loop]])
    elif reverse_edges:
        names += [f"rev_{r}" for r in rel_names]
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
        rel_code, w = np.concatenate([rel_code, rel_code + len(rel_names)]), np.concatenate([w, w])
    # group by (src type, relation, dst type), in order of first appearance
    key = (type_code[src] * len(names) + rel_code) * len(type_names) + type_code[dst]
    groups, first = np.unique(key, return_index=True)
    for g in groups[np.argsort(first)]:
        members = np.flatnonzero(key == g)
        s_type, rest = divmod(int(g), len(names) * len(type_names))
        rel, d_type = divmod(rest, len(type_names))
        et = (type_names[s_type], names[rel], type_names[d_type])
        data[et].edge_index = torch.as_tensor(np.stack([local[src[members]], local[dst[members]]]), dtype=torch.long)
        if (w[members] != 1.0).any():
            data[et].edge_weight = torch.as_tensor(w[members], dtype=torch.float32)


# ============================================================================ Task -> NetworkX
def to_networkx(task: Task, *, node_type: str = "node_type", label: str = "y", features: str = "x",
                split: str = "split", edge_type: str = "edge_type", weight: str = "weight",
                features_as_string: bool = False):
    """The Task's graph as an ``nx.MultiDiGraph`` with the module's attribute convention.

    Node ids: the NetworkX ids the Task was read with (``from_networkx``), else ``"<type>:<index>"``.
    ``features_as_string``: ``x`` as ``"0.1,0.2"`` strings, which GraphML / GEXF writers accept.
    The graph attribute ``class_names`` (JSON text) keeps the class order for ``from_networkx``.
    ``from_networkx(to_networkx(task))`` gives the task back (node / edge types, features,
    labels, official split, edge weights; class names when they are not ``class0, class1, ...``).
    """
    nx = _import_nx()
    if task.kind != "node":
        raise HgimbError(f"to_networkx converts node tasks (one graph); '{task.name}' is a {task.kind} task")
    data = task.data
    known = task.meta.get("node_ids") or {}
    names = {}
    for t in data.node_types:
        n = int(data[t].num_nodes)
        ids = known.get(t)
        names[t] = ids if ids is not None and len(ids) == n else np.array([f"{t}:{i}" for i in range(n)], dtype=object)
    offsets = task.type_offsets()
    part_of = np.full(task.num_items, "", dtype=object)
    for part in SPLITS:
        if part in task.split:
            part_of[task.split[part].numpy()] = part
    G = nx.MultiDiGraph(class_names=json.dumps(list(task.class_names)))  # JSON text: GraphML-safe
    for t in data.node_types:
        n = int(data[t].num_nodes)
        attrs = [{node_type: t} for _ in range(n)]
        x = getattr(data[t], "x", None)
        if x is not None:
            rows = x.detach().cpu().numpy().tolist()
            for a, row in zip(attrs, rows):
                a[features] = ",".join(repr(float(v)) for v in row) if features_as_string else row
        if t in offsets:
            start = offsets[t]
            ys = task.y[start:start + n].tolist()
            for i, (a, c) in enumerate(zip(attrs, ys)):
                if c >= 0:
                    a[label] = task.class_names[c] if _named(task) else int(c)
                if part_of[start + i]:
                    a[split] = part_of[start + i]
        G.add_nodes_from(zip(names[t], attrs))
    for et in data.edge_types:
        store = data[et]
        ei = store.edge_index.cpu().numpy()
        src, dst = names[et[0]][ei[0]], names[et[2]][ei[1]]
        w = getattr(store, "edge_weight", None)
        if w is None:
            G.add_edges_from(zip(src, dst), **{edge_type: et[1]})
        else:
            G.add_edges_from((u, v, {edge_type: et[1], weight: float(x)}) for u, v, x in zip(src, dst, w.tolist()))
    return G


def _named(task: Task) -> bool:
    """Class names worth writing (not the generic class0, class1, ...)."""
    return list(task.class_names) != [f"class{c}" for c in range(task.num_classes)]


# ============================================================================ files
def read_networkx_file(path: str | os.PathLike, directed: Optional[bool] = None, nodes: str | os.PathLike = "",
                       edge_type: str = "edge_type", weight: str = "weight"):
    """A NetworkX graph from a GraphML / GEXF / edge-list file (and an optional node table)."""
    nx = _import_nx()
    path = Path(path).expanduser()
    if not path.is_file():
        raise HgimbError(f"graph file {path} not found; give a .graphml, .gexf or edge-list file")
    suffix = path.suffix.lower()
    try:
        if suffix in GRAPHML:
            G = nx.read_graphml(path)
        elif suffix in GEXF:
            G = nx.read_gexf(path)
        elif suffix in EDGELIST:
            G = _read_edgelist(nx, path, directed, edge_type, weight)
        else:
            raise HgimbError(f"{path}: unknown graph file type '{suffix or path.name}'; use .graphml, .gexf or an edge "
                             f"list ({', '.join(EDGELIST)})")
    except HgimbError:
        raise
    except Exception as exc:  # ParseError (with line/column), NetworkXError, KeyError, ValueError from the readers
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        kind = "GraphML" if suffix in GRAPHML else "GEXF" if suffix in GEXF else "edge list"
        raise HgimbError(f"{path}: not a readable {kind} file ({type(exc).__name__}: {first[:200]})") from None
    if directed is not None and suffix not in EDGELIST and directed != G.is_directed():
        G = G.to_directed() if directed else G.to_undirected()
    if nodes:
        _add_node_table(G, Path(nodes).expanduser())
    return G


def _read_edgelist(nx, path: Path, directed: Optional[bool], edge_type: str, weight: str):
    """``u v`` / ``u v relation [weight]`` lines, or networkx's ``u v {attrs}`` (decided by the
    first line). Like ``nx.parse_edgelist``, one Python step per line; a bad line is named."""
    create = nx.MultiDiGraph if directed else nx.MultiGraph
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(errors="replace").splitlines()]
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line]
    delimiter = "," if path.suffix.lower() == ".csv" else None
    if not numbered:
        raise HgimbError(f"{path}: the edge list has no edges")
    first = numbered[0][1]
    fields = first.split(delimiter) if delimiter else first.split()
    if len(fields) > 2 and fields[2].lstrip().startswith("{"):  # networkx's write_edgelist format
        try:
            return nx.parse_edgelist([line for _, line in numbered], delimiter=delimiter, create_using=create(),
                                     nodetype=str, data=True)
        except (TypeError, ValueError, IndexError, SyntaxError):
            pass
        for line_no, line in numbered:  # the error path: find the first bad line
            try:
                nx.parse_edgelist([line], delimiter=delimiter, create_using=create(), nodetype=str, data=True)
            except (TypeError, ValueError, IndexError, SyntaxError) as exc:
                raise HgimbError(f"{path} line {line_no}: cannot read edge {line[:80]!r} ({exc})") from None
        raise HgimbError(f"{path}: cannot read the edge list")
    G = create()
    edges = []
    for line_no, line in numbered:
        parts = [p.strip() for p in (line.split(delimiter) if delimiter else line.split())]
        if not 2 <= len(parts) <= 4 or not parts[0] or not parts[1]:
            raise HgimbError(f"{path} line {line_no}: {len(parts)} column(s) in {line[:80]!r}; an edge list line is "
                             f"'u v', 'u v relation' or 'u v relation weight' (or networkx's 'u v {{attrs}}')")
        attrs = {edge_type: parts[2]} if len(parts) > 2 else {}
        if len(parts) > 3:
            attrs[weight] = parts[3]  # checked (and named by edge) in from_networkx
        edges.append((parts[0], parts[1], attrs))
    G.add_edges_from(edges)
    return G


def _add_node_table(G, table: Path) -> None:
    if not table.is_file():
        raise HgimbError(f"node table {table} not found (the nodes= option)")
    sep = "\t" if table.suffix.lower() in (".tsv", ".tab") else ","
    try:
        frame = pd.read_csv(table, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise HgimbError(f"{table}: cannot parse the node table ({str(exc).splitlines()[0]})") from None
    if frame.shape[1] < 2:
        raise HgimbError(f"{table}: a node table needs a header row, node ids in the first column and one column per "
                         f"attribute (e.g. id,node_type,y,x)")
    id_col = frame.columns[0]
    duplicated = frame[id_col].duplicated().to_numpy()
    if duplicated.any():
        i = int(np.flatnonzero(duplicated)[0])
        raise HgimbError(f"{table} line {i + 2}: node {frame[id_col].iloc[i]!r} is listed twice")
    # GraphML ids are strings; a node table names them as text too
    attrs = frame.set_index(id_col).replace("", None).to_dict(orient="index")
    for node, values in attrs.items():
        G.add_node(node, **{k: v for k, v in values.items() if v is not None})


def load_networkx_file(path: str | os.PathLike, name: Optional[str] = None, **options) -> Task:
    """``from_networkx(read_networkx_file(path))`` with the ``nx:`` loader's options (typed, as
    :data:`PARAMS` declares them; defaults for the others), cached."""
    path = Path(path).expanduser()
    dataset = name or f"nx:{path}"
    opts = {**defaults(PARAMS), **options}
    directed, reverse, use_cache = opts["directed"], opts["reverse_edges"], opts["cache"]
    if not path.is_file():
        raise HgimbError(f"graph file {path} not found; give a .graphml, .gexf or edge-list file")
    table = Path(opts["nodes"]).expanduser() if opts["nodes"] else None
    if table is not None and not table.is_file():
        raise HgimbError(f"node table {table} not found (the nodes= option of dataset '{dataset}')")

    def build() -> Task:
        G = read_networkx_file(path, directed=directed, nodes=table or "", edge_type=opts["edge_type"],
                               weight=opts["weight"])
        return from_networkx(G, name=dataset, node_type=opts["node_type"], label=opts["label"],
                             features=opts["features"], split=opts["split"], edge_type=opts["edge_type"],
                             weight=opts["weight"], target=opts["target"], reverse_edges=reverse, source=str(path))

    if not use_cache:
        return build()
    prints = [_cache.file_fingerprint(path)] + ([_cache.file_fingerprint(table)] if table else [])
    key = _cache.cache_key("networkx", FORMAT_VERSION, prints, sorted(opts.items()))
    task = _cache.load_or_build("networkx", key, build)
    task.name = dataset  # the same file may be named differently (relative / absolute path)
    return task


@register_prefix("nx", "a NetworkX graph file: nx:<file.graphml|.gexf|edge list> (attributes node_type, y, x, edge_type; docs/interop.md)",
                 PARAMS)
def load_nx_prefix(root, path: str, **options) -> Task:
    """``nx:<file>``: a relative path is tried from the working directory, then from the data root."""
    return load_networkx_file(resolve_path(root, path), name=f"nx:{path}", **options)
