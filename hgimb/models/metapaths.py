"""Metapaths: parse them from the command line against a graph's schema, pick per-dataset defaults,
and build metapath-induced adjacency (HAN's input).

A metapath is a list of canonical edge types ``(src, rel, dst)`` whose consecutive types chain
(``dst`` of one step is ``src`` of the next). On the command line a metapath is written as a
``-``-separated sequence of node types and/or relation names, several metapaths separated by
commas::

    movie-actor-movie,movie-director-movie      # node types; the relation between them is found
    movie-starring-actor-in-movie               # node types and relation names
    starring-in                                 # relation names only

A node-type step needs exactly one relation between the two types (else name the relation).
Names that contain ``-`` themselves are matched greedily (longest known name first).
"""
from __future__ import annotations

import difflib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import HgimbError

EdgeType = Tuple[str, str, str]

# Per-dataset defaults as node-type sequences (HAN / metapath2vec papers' choices).
DEFAULT_METAPATHS: Dict[str, List[List[str]]] = {
    "freebase": [["movie", "actor", "movie"], ["movie", "director", "movie"], ["movie", "writer", "movie"]],
    "acm": [["paper", "author", "paper"], ["paper", "subject", "paper"]],
    "dblp": [["author", "paper", "author"], ["author", "paper", "term", "paper", "author"],
             ["author", "paper", "venue", "paper", "author"]],
    "imdb": [["movie", "director", "movie"], ["movie", "actor", "movie"], ["movie", "keyword", "movie"]],
}


def _schema_text(data) -> str:
    rels = sorted({f"{s}-{r}-{d}" for (s, r, d) in data.edge_types})
    return f"valid node types: {', '.join(data.node_types)}; relations: {', '.join(rels)}"


def _tokenize(text: str, names: set, spec: str, data) -> List[str]:
    """Split ``a-b-c`` into known names, longest match first (names may contain '-')."""
    parts = [p.strip() for p in text.split("-")]
    if any(not p for p in parts):
        raise HgimbError(f"metapath '{text}' in --metapaths '{spec}' has an empty step; {_schema_text(data)}")
    tokens, i = [], 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            candidate = "-".join(parts[i:j])
            if candidate in names:
                tokens.append(candidate)
                i = j
                break
        else:
            close = difflib.get_close_matches(parts[i], sorted(names), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise HgimbError(
                f"unknown step '{parts[i]}'{hint} in metapath '{text}' (--metapaths '{spec}'); {_schema_text(data)}"
            )
    return tokens


def parse_metapath(text: str, data, spec: Optional[str] = None) -> List[EdgeType]:
    """One metapath (``movie-actor-movie`` or with relation names) -> list of edge types."""
    spec = spec if spec is not None else text
    node_types = set(data.node_types)
    rel_names = {r for (_, r, _) in data.edge_types}
    tokens = _tokenize(text.strip(), node_types | rel_names, spec, data)
    path: List[EdgeType] = []
    current: Optional[str] = None  # node type the path stands on
    after_relation = False
    for k, token in enumerate(tokens):
        is_node = token in node_types
        is_rel = token in rel_names
        if is_node and (not is_rel or current is None or not any(
                et[0] == current and et[1] == token for et in data.edge_types)):
            if current is None:
                current = token
            elif after_relation:
                if token != current:
                    raise HgimbError(
                        f"in metapath '{text}' relation '{path[-1][1]}' ends at '{current}', not '{token}'; "
                        f"{_schema_text(data)}"
                    )
            else:
                choices = [et for et in data.edge_types if et[0] == current and et[2] == token]
                if not choices:
                    raise HgimbError(
                        f"metapath '{text}' steps from '{current}' to '{token}' but no relation joins them; "
                        f"{_schema_text(data)}"
                    )
                if len(choices) > 1:
                    names = ", ".join(et[1] for et in choices)
                    raise HgimbError(
                        f"metapath '{text}': several relations go from '{current}' to '{token}' ({names}); "
                        f"name one, e.g. '{current}-{choices[0][1]}-{token}'"
                    )
                path.append(choices[0])
                current = token
            after_relation = False
            continue
        # a relation name
        choices = [et for et in data.edge_types if et[1] == token and (current is None or et[0] == current)]
        if current is None and len(choices) > 1 and k + 1 < len(tokens) and tokens[k + 1] in node_types:
            choices = [et for et in choices if et[2] == tokens[k + 1]] or choices
        if not choices:
            starts = sorted({et[0] for et in data.edge_types if et[1] == token})
            raise HgimbError(
                f"in metapath '{text}' relation '{token}' does not start at '{current}' "
                f"(it starts at {', '.join(starts)}); {_schema_text(data)}"
            )
        if len(choices) > 1:
            ends = ", ".join(f"{s}-{r}-{d}" for (s, r, d) in choices)
            raise HgimbError(f"in metapath '{text}' relation '{token}' is ambiguous ({ends}); start with a node type")
        path.append(choices[0])
        current = choices[0][2]
        after_relation = True
    if not path:
        raise HgimbError(f"metapath '{text}' has no relation step (need at least two node types); {_schema_text(data)}")
    return path


def parse_metapaths(spec, data) -> List[List[EdgeType]]:
    """``--metapaths`` value (comma-separated string, or a list of strings / edge-type lists)
    -> list of metapaths, each a list of canonical edge types of ``data``."""
    if isinstance(spec, str):
        items = [s for s in (p.strip() for p in spec.split(",")) if s]
        if not items:
            raise HgimbError(f"--metapaths '{spec}' names no metapath; {_schema_text(data)}")
        return [parse_metapath(item, data, spec) for item in items]
    out = []
    for item in spec:
        if isinstance(item, str):
            out.append(parse_metapath(item, data))
        else:
            out.append(check_metapath([tuple(et) for et in item], data))
    if not out:
        raise HgimbError(f"no metapath given; {_schema_text(data)}")
    return out


def check_metapath(path: Sequence[EdgeType], data) -> List[EdgeType]:
    """Validate a metapath given as edge types (each exists, consecutive types chain)."""
    path = [tuple(et) for et in path]
    for et in path:
        if et not in data.edge_types:
            raise HgimbError(f"edge type {et} of metapath {path} is not in the graph; {_schema_text(data)}")
    for a, b in zip(path[:-1], path[1:]):
        if a[2] != b[0]:
            raise HgimbError(f"metapath {path} does not chain: {a} ends at '{a[2]}' but {b} starts at '{b[0]}'")
    if not path:
        raise HgimbError(f"empty metapath; {_schema_text(data)}")
    return path


def default_metapaths(dataset_name: str, data, target: Optional[str] = None) -> List[List[EdgeType]]:
    """The usual metapaths of a known dataset (Freebase: MAM, MDM, MWM; ACM: PAP, PSP), else every
    ``T-x-T`` through a neighbouring type ``x`` of the target type ``T`` (both directions present)."""
    key = str(dataset_name).lower().split(":")[-1].rstrip("/").split("/")[-1]
    key = key[:-4] if key.endswith(".zip") else key
    known = DEFAULT_METAPATHS.get(key)
    if known:
        try:
            return [parse_metapath("-".join(p), data) for p in known]
        except HgimbError:
            pass  # a variant of the dataset with another schema: fall through to the generic rule
    target = target or data.node_types[0]
    paths = []
    for (s, r, d) in data.edge_types:
        if s != target or d == target:
            continue
        back = [et for et in data.edge_types if et[0] == d and et[2] == target]
        if back:
            paths.append([(s, r, d), back[0]])
    if not paths:
        raise HgimbError(
            f"no default metapath for '{dataset_name}' (no type links to and from '{target}'); "
            f"give --metapaths; {_schema_text(data)}"
        )
    return paths


def metapath_name(path: Sequence[EdgeType]) -> str:
    return "-".join([path[0][0]] + [et[2] for et in path])


# ---------------------------------------------------------------------------- adjacency
def relation_csr(data, edge_type: EdgeType):
    """scipy CSR adjacency (src x dst, binary) of one relation."""
    import scipy.sparse as sp

    ei = data[edge_type].edge_index.cpu().numpy()
    shape = (int(data[edge_type[0]].num_nodes), int(data[edge_type[2]].num_nodes))
    adj = sp.csr_matrix((np.ones(ei.shape[1], dtype=np.float32), (ei[0], ei[1])), shape=shape)
    adj.data[:] = 1.0  # duplicate edges count once
    return adj


def metapath_adjacency(data, path: Sequence[EdgeType], max_nnz: int = 50_000_000):
    """Binary adjacency of the metapath-induced graph (start type x end type) as scipy CSR.

    We multiply scipy CSR matrices ourselves: PyG's ``AddMetaPaths`` works here without torch-sparse,
    but on Freebase's three default metapaths it took 0.63 s against 0.06 s for scipy."""
    adj = relation_csr(data, path[0])
    for et in path[1:]:
        adj = adj @ relation_csr(data, et)
        adj.data[:] = 1.0
        if adj.nnz > max_nnz:
            raise HgimbError(
                f"metapath {metapath_name(path)} induces {adj.nnz:,} edges (limit {max_nnz:,}); "
                f"choose a sparser metapath"
            )
    adj.eliminate_zeros()
    return adj


def metapath_edge_index(data, path: Sequence[EdgeType]) -> torch.Tensor:
    """``edge_index`` of the metapath-induced graph: row 0 the path's start node, row 1 its end
    node (PyG ``AddMetaPaths``' convention; messages flow start -> end, which for the usual
    symmetric paths such as ``T-x-T`` is the same set of pairs both ways)."""
    coo = metapath_adjacency(data, path).tocoo()
    return torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
