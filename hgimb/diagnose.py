"""``python -m hgimb.diagnose``: what to check about a dataset's imbalance before training.

The library part is :func:`diagnose` (``Task -> dict``); :func:`format_report` renders that dict
as text and :func:`main` is the CLI. Reported: sample and class counts (training split when a
split is requested), the imbalance ratio (largest / smallest class) and its severity
(mild < 3:1, moderate 3-10:1, severe > 10:1), the positive-class weight (binary) and inverse
frequency class weights, a remedy backed by the project's measured remedy tables for that regime
(:func:`recommend`, :mod:`hgimb.evidence`) or, when they disagree, a pointer to ``hgimb.advise``
(a search on the user's own validation split), and for node tasks the node and
edge counts plus label homophily per class along direct relations and metapaths
target -> X -> target (scipy sparse products over labelled nodes only), and the graph's connected
components (NetworkX): isolated labelled nodes and validation / test nodes that no training node
can reach.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .errors import HgimbError

MILD_BELOW = 3.0  # ratio < 3: mild
SEVERE_ABOVE = 10.0  # ratio > 10: severe; 3..10 moderate
MAX_METAPATH_PAIRS = 50_000_000  # skip a metapath whose product could exceed this many entries
MAX_CONNECTIVITY_EDGES = 5_000_000  # connected components through NetworkX up to this many edges
BAR_WIDTH = 40


# ---------------------------------------------------------------------------- library
def severity(ratio: Optional[float]) -> str:
    """mild (< 3:1), moderate (3-10:1) or severe (> 10:1; also when a class is empty)."""
    if ratio is None or ratio > SEVERE_ABOVE:
        return "severe"
    return "mild" if ratio < MILD_BELOW else "moderate"


def inverse_frequency_weights(counts: np.ndarray) -> List[float]:
    """n / (C n_c) rescaled to average 1 over the classes: the ratios of scikit-learn's
    ``class_weight='balanced'`` and the normalisation of the ``weighted`` remedy."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = 1.0 / np.maximum(counts, 1.0)
    return (weights * len(counts) / weights.sum()).tolist()


ADVISE_HINT = "python -m hgimb.advise DATASET [train flags] --budget 40"


def _rank(scores: Dict[str, List[float]], remedy: str) -> int:
    """1 + the number of remedies with a strictly higher mean (ties share the better rank)."""
    mean = scores[remedy][0]
    return 1 + sum(value[0] > mean for value in scores.values())


def recommend(sev: str, binary: bool, kind: Optional[str] = None, evidence: Optional[Dict[str, Any]] = None
              ) -> Dict[str, Any]:
    """A remedy backed by the project's measured tables (:mod:`hgimb.evidence`, from BENCHMARKS),
    or ``remedy: None`` with a pointer to ``hgimb.advise`` when they do not single one out.

    The tables of the regime are those of the same severity, the same number of classes (binary
    or not) and, when given, the same ``kind`` (node / graph). A remedy is recommended only if
    every one of those tables measured it, ranks it at or above the median, and measured its gain
    over ``none`` larger than its own seed standard deviation; among such remedies the one with
    the best mean relative rank. Otherwise the evidence is mixed (or absent) and the answer is a
    search on the user's validation split. ``evidence`` defaults to the packaged file."""
    from . import evidence as evidence_module

    evidence = evidence if evidence is not None else evidence_module.load()
    tables = [t for t in evidence["tables"] if t["severity"] == sev and bool(t["binary"]) == binary
              and (kind is None or t["kind"] == kind)]
    what = f"{sev} {'binary' if binary else 'multi-class'} {kind + ' ' if kind else ''}tasks"
    out: Dict[str, Any] = {"remedy": None, "regime": what, "tables": [t["id"] for t in tables], "evidence": [],
                           "advise": ADVISE_HINT}
    if not tables:
        out["why"] = (f"no measured remedy table for {what} (BENCHMARKS): choose on your own validation split "
                      f"with hgimb.advise")
        return out
    common = set.intersection(*(set(t["scores"]) for t in tables)) - {"none"}
    robust = []
    for remedy in sorted(common):
        ok = True
        for t in tables:
            n = len(t["scores"])
            gain = t["scores"][remedy][0] - t["scores"].get("none", [float("-inf")])[0]
            if _rank(t["scores"], remedy) > (n + 1) / 2 or not gain > t["scores"][remedy][1]:
                ok = False
                break
        if ok:
            robust.append((float(np.mean([_rank(t["scores"], remedy) / len(t["scores"]) for t in tables])), remedy))
    bests = sorted({max(t["scores"], key=lambda r: t["scores"][r][0]) for t in tables})
    if not robust:
        out["why"] = (f"evidence mixed: no remedy ranks at or above the median, clear of 'none' by more than its seed "
                      f"std, in all {len(tables)} measured table(s) for {what} (best per table: {', '.join(bests)}); "
                      f"choose on your own validation split with hgimb.advise")
        out["evidence"] = [_evidence_line(t, None) for t in tables]
        return out
    remedy = min(robust)[1]
    out["remedy"] = remedy
    out["evidence"] = [_evidence_line(t, remedy) for t in tables]
    others = f"the best of {len(robust)} such remedies" if len(robust) > 1 else "the only remedy"
    out["why"] = (f"{others} ranked at or above the median, and clear of 'none' by more than its seed std, in all "
                  f"{len(tables)} measured table(s) for {what}"
                  + (f"; the best differs by graph ({', '.join(bests)}): hgimb.advise picks on your validation split"
                     if len(bests) > 1 or bests != [remedy] else ""))
    return out


def _evidence_line(table: Dict[str, Any], remedy: Optional[str]) -> Dict[str, Any]:
    scores = table["scores"]
    best = max(scores, key=lambda r: scores[r][0])
    line = {"table": table["id"], "section": table["section"], "metric": table["metric"], "n": table["n"],
            "remedies": len(scores), "best": [best, scores[best][0]], "none": scores.get("none", [None])[0]}
    if remedy is not None:
        line.update(remedy=remedy, rank=_rank(scores, remedy), score=scores[remedy])
    return line


def _class_basis(task, part: Optional[str]) -> tuple[np.ndarray, str]:
    """Item indices whose labels are counted: the ``part`` split, else all labelled items."""
    y = task.y.cpu().numpy()
    if part is not None:
        if part not in task.split:
            raise HgimbError(f"dataset '{task.name}' has no '{part}' split")
        return task.split[part].cpu().numpy().astype(np.int64), f"{part} split"
    return np.flatnonzero(y >= 0), "all labelled items"


def _counts_summary(counts: np.ndarray, class_names: List[str]) -> Dict[str, Any]:
    counts = np.asarray(counts, dtype=np.int64)
    present = counts > 0
    largest = int(np.argmax(counts))
    smallest = int(np.argmin(counts))
    ratio = float(counts[largest] / counts[smallest]) if counts[smallest] > 0 else None
    sev = severity(ratio)
    binary = len(counts) == 2
    out = {
        "class_counts": counts.tolist(),
        "class_shares": (counts / max(counts.sum(), 1)).tolist(),
        "imbalance_ratio": ratio,
        "majority_class": class_names[largest],
        "minority_class": class_names[smallest],
        "empty_classes": [class_names[c] for c in np.flatnonzero(~present)],
        "severity": sev,
        # binary: BCE pos_weight = negatives / positives (class 1 is the positive class)
        "pos_weight": (float(counts[0] / counts[1]) if counts[1] > 0 else None) if binary else None,
        "class_weights": inverse_frequency_weights(counts),
        "recommendation": recommend(sev, binary),
    }
    return out


def _edge_list(data) -> tuple[Dict[str, int], Dict[tuple, Any]]:
    """(node counts per type, {(src, rel, dst): edge_index}) for HeteroData or a plain Data."""
    if hasattr(data, "edge_types"):
        nodes = {t: int(data[t].num_nodes) for t in data.node_types}
        edges = {et: data[et].edge_index for et in data.edge_types if "edge_index" in data[et]}
        return nodes, edges
    return {"node": int(data.num_nodes)}, {("node", "to", "node"): data.edge_index}


def _binary_csr(rows: np.ndarray, cols: np.ndarray, shape) -> "Any":
    from scipy import sparse

    matrix = sparse.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=shape)
    matrix.data[:] = 1.0  # duplicates summed: back to 0/1
    return matrix


def _homophily_of(pairs, onehot, class_names) -> Dict[str, Any]:
    """Homophily from a binary labelled x labelled neighbour matrix (diagonal already removed)."""
    mix = np.asarray((onehot.T @ pairs @ onehot).todense(), dtype=np.float64)  # C x C ordered pairs
    per_row = mix.sum(1)
    per_class = {name: (float(mix[c, c] / per_row[c]) if per_row[c] > 0 else None)
                 for c, name in enumerate(class_names)}
    total = mix.sum()
    degree = np.asarray(pairs.sum(1)).ravel()
    return {
        "pairs": int(total),
        "coverage": float((degree > 0).mean()) if degree.size else 0.0,
        "overall": float(np.trace(mix) / total) if total > 0 else None,
        "per_class": per_class,
    }


def label_homophily(task, labels: np.ndarray) -> Dict[str, Any]:
    """Per target type, per direct relation and metapath target -> X -> target: how often a
    labelled node's labelled neighbours share its class (``labels``: item labels, -1 = ignore).

    ``per_class[c]`` counts ordered pairs (u, v), u != v, both labelled, u of class c; a metapath
    neighbour counts once however many paths connect the pair. ``coverage``: share of labelled
    nodes with at least one labelled neighbour that way. Chance level is the class share.
    """
    from scipy import sparse

    nodes, edges = _edge_list(task.data)
    out: Dict[str, Any] = {}
    target_types = task.target_types or list(nodes)[:1]
    offsets = task.type_offsets() if task.target_types else {target_types[0]: 0}
    for target in target_types:
        n_target = nodes[target]
        y_t = labels[offsets[target]: offsets[target] + n_target]
        labelled = np.flatnonzero(y_t >= 0)
        result: Dict[str, Any] = {"labelled": int(labelled.size), "relations": {}, "metapaths": {}, "skipped": {}}
        out[target] = result
        if labelled.size == 0:
            continue
        position = np.full(n_target, -1, dtype=np.int64)
        position[labelled] = np.arange(labelled.size)
        onehot = sparse.csr_matrix(
            (np.ones(labelled.size, dtype=np.float32), (np.arange(labelled.size), y_t[labelled])),
            shape=(labelled.size, task.num_classes),
        )
        to_other: Dict[str, List[np.ndarray]] = {}
        for (src, rel, dst), edge_index in edges.items():
            ei = edge_index.cpu().numpy()
            if src == target and dst == target:
                keep = (position[ei[0]] >= 0) & (position[ei[1]] >= 0)
                a, b = position[ei[0, keep]], position[ei[1, keep]]
                # direction does not matter for homophily: symmetrise, then drop self-loops
                pairs = _binary_csr(np.concatenate([a, b]), np.concatenate([b, a]), (labelled.size,) * 2)
                pairs.setdiag(0)
                pairs.eliminate_zeros()
                result["relations"][f"{src}-{rel}-{dst}"] = _homophily_of(pairs, onehot, task.class_names)
            elif src == target:
                to_other.setdefault(dst, []).append(ei)
            elif dst == target:
                to_other.setdefault(src, []).append(ei[::-1])
        for other, parts in sorted(to_other.items()):
            ei = np.concatenate(parts, axis=1)
            keep = position[ei[0]] >= 0
            link = _binary_csr(position[ei[0, keep]], ei[1, keep], (labelled.size, nodes[other]))
            name = f"{target}-{other}-{target}"
            hub = np.asarray(link.sum(0)).ravel()
            bound = float((hub**2).sum())  # paths through `other`: an upper bound on the product's entries
            if bound > MAX_METAPATH_PAIRS:
                result["skipped"][name] = f"more than {MAX_METAPATH_PAIRS:,} paths ({bound:,.0f})"
                continue
            pairs = (link @ link.T).tocsr()
            pairs.data[:] = 1.0
            pairs.setdiag(0)
            pairs.eliminate_zeros()
            result["metapaths"][name] = _homophily_of(pairs, onehot, task.class_names)
    return out


def connectivity(task, labels: np.ndarray) -> Dict[str, Any]:
    """Connected components of the whole graph (every node type, edges undirected), through
    NetworkX: how many, the largest one's share of nodes, the labelled target nodes without any
    edge, and, when the task has a split, the validation / test nodes whose component holds no
    training node (no message path from a training label can reach them), per class.

    ``labels``: item labels (-1 = ignore) for the isolated-node counts. Graphs above
    :data:`MAX_CONNECTIVITY_EDGES` edges are skipped (NetworkX holds every edge as a Python object).
    """
    import networkx as nx

    nodes, edges = _edge_list(task.data)
    total_edges = sum(int(ei.size(1)) for ei in edges.values())
    if total_edges > MAX_CONNECTIVITY_EDGES:
        return {"skipped": f"more than {MAX_CONNECTIVITY_EDGES:,} edges ({total_edges:,})"}
    start = dict(zip(nodes, np.cumsum([0] + list(nodes.values()))[:-1].tolist()))
    graph = nx.Graph()
    graph.add_nodes_from(range(sum(nodes.values())))
    for (src, _, dst), edge_index in edges.items():
        ei = edge_index.cpu().numpy()
        graph.add_edges_from(zip((ei[0] + start[src]).tolist(), (ei[1] + start[dst]).tolist()))
    component = np.empty(graph.number_of_nodes(), dtype=np.int64)
    sizes = []
    for i, members in enumerate(sorted(nx.connected_components(graph), key=len, reverse=True)):
        component[list(members)] = i
        sizes.append(len(members))
    degree = np.fromiter((d for _, d in sorted(graph.degree)), dtype=np.int64, count=graph.number_of_nodes())
    # item index -> node index in the whole graph
    target_types = task.target_types or list(nodes)[:1]
    item_node = np.concatenate([start[t] + np.arange(nodes[t]) for t in target_types])
    labelled = np.flatnonzero(labels >= 0)
    isolated = labelled[degree[item_node[labelled]] == 0]
    out: Dict[str, Any] = {
        "components": len(sizes),
        "largest_share": sizes[0] / graph.number_of_nodes() if sizes else 0.0,
        "isolated_labelled": int(isolated.size),
        "isolated_per_class": np.bincount(labels[isolated], minlength=task.num_classes).tolist(),
    }
    if task.split and "train" in task.split:
        y = task.y.cpu().numpy()
        reached = np.zeros(len(sizes), dtype=bool)
        reached[component[item_node[task.split["train"].cpu().numpy()]]] = True
        for part in ("val", "test"):
            if part in task.split:
                items = task.split[part].cpu().numpy()
                cut = items[~reached[component[item_node[items]]]]
                out[f"{part}_unreached"] = int(cut.size)
                out[f"{part}_unreached_per_class"] = np.bincount(y[cut], minlength=task.num_classes).tolist()
                out[f"{part}_size"] = int(items.size)
    return out


def diagnose(task, part: Optional[str] = None) -> Dict[str, Any]:
    """Imbalance facts about ``task`` as a JSON-ready dict.

    ``part``: count labels of that split part (``"train"``) — also used for homophily — else all
    labelled items.
    """
    items, basis = _class_basis(task, part)
    y = task.y.cpu().numpy()
    counts = np.bincount(y[items], minlength=task.num_classes) if items.size else np.zeros(task.num_classes, int)
    report: Dict[str, Any] = {
        "dataset": task.name,
        "kind": task.kind,
        "target": task.target,
        "num_items": task.num_items,
        "num_labelled": int((y >= 0).sum()),
        "num_classes": task.num_classes,
        "class_names": list(task.class_names),
        "counted": basis,
        "split_mode": task.meta.get("split_mode"),
        "num_counted": int(items.size),
    }
    report.update(_counts_summary(counts, list(task.class_names)))
    report["recommendation"] = recommend(report["severity"], task.num_classes == 2, kind=task.kind)
    if task.split:
        report["split_counts"] = {p: np.bincount(y[task.split[p].cpu().numpy()], minlength=task.num_classes).tolist()
                                  for p in ("train", "val", "test") if p in task.split}
    if task.kind == "node" and task.data is not None:
        nodes, edges = _edge_list(task.data)
        labels = np.full(task.num_items, -1, dtype=np.int64)
        labels[items] = y[items]
        report["graph"] = {
            "node_counts": nodes,
            "edge_counts": {f"{s}-{r}-{d}": int(ei.size(1)) for (s, r, d), ei in edges.items()},
            "homophily_labels": basis,
            "homophily": label_homophily(task, labels),
            "connectivity": connectivity(task, labels),
        }
    elif task.kind == "graph" and task.graphs:
        atoms = np.array([int(g.num_nodes) for g in task.graphs])
        edge_total = sum(int(g.edge_index.size(1)) for g in task.graphs)
        crystal: Dict[str, Any] = {
            "num_graphs": len(task.graphs),
            "atoms_mean": float(atoms.mean()),
            "atoms_max": int(atoms.max()),
            "edges_per_atom": float(edge_total / max(atoms.sum(), 1)),
        }
        for key in ("threshold", "source", "graph_params", "skipped"):
            if key in task.meta:
                crystal[key] = task.meta[key]
        raw = task.meta.get("raw_target")
        if raw is not None and len(raw):
            raw = np.asarray(raw, dtype=np.float64)
            crystal["raw_target"] = {"min": float(raw.min()), "median": float(np.median(raw)), "max": float(raw.max())}
        report["crystal"] = crystal
    return report


# ---------------------------------------------------------------------------- text
def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_report(report: Dict[str, Any]) -> str:
    """The human-readable rendering of :func:`diagnose`'s dict."""
    lines = []
    unit = "graphs" if report["kind"] == "graph" else f"{report['target']} nodes"
    lines.append(f"dataset        {report['dataset']} ({report['kind']} task, {report['num_items']} {unit}, "
                 f"{report['num_labelled']} labelled, {report['num_classes']} classes)")
    if report.get("split_mode"):
        sizes = ", ".join(f"{p} {sum(c)}" for p, c in report.get("split_counts", {}).items())
        lines.append(f"split          {report['split_mode']}: {sizes}")
    lines.append(f"class counts   ({report['counted']}, {report['num_counted']} items)")
    counts = report["class_counts"]
    biggest = max(max(counts), 1)
    width = max(len(str(n)) for n in report["class_names"])
    for name, count, share in zip(report["class_names"], counts, report["class_shares"]):
        bar = "#" * max(1 if count else 0, round(BAR_WIDTH * count / biggest))
        lines.append(f"  {name:<{width}}  {count:>7}  {bar:<{BAR_WIDTH}} {100 * share:5.1f}%")
    ratio = report["imbalance_ratio"]
    ratio_text = f"{ratio:.2f}:1" if ratio is not None else f"infinite (empty: {', '.join(report['empty_classes'])})"
    lines.append(f"imbalance      {ratio_text} (majority '{report['majority_class']}', minority "
                 f"'{report['minority_class']}') -> {report['severity']}")
    if report["pos_weight"] is not None:
        lines.append(f"pos_weight     {report['pos_weight']:.3f} (negatives / positives, positive = "
                     f"'{report['class_names'][1]}')")
    lines.append("class weights  " + ", ".join(f"{w:.3f}" for w in report["class_weights"])
                 + " (inverse frequency, mean 1)")
    lines += format_recommendation(report["recommendation"], report.get("dataset"))
    crystal = report.get("crystal")
    if crystal:
        text = (f"crystals       {crystal['num_graphs']} graphs, {crystal['atoms_mean']:.1f} atoms mean, "
                f"{crystal['atoms_max']} max, {crystal['edges_per_atom']:.1f} edges per atom")
        lines.append(text)
        if "raw_target" in crystal and crystal.get("threshold") is not None:
            raw = crystal["raw_target"]
            lines.append(f"target         threshold {crystal['threshold']:g}; raw values {raw['min']:g} .. {raw['max']:g}, "
                         f"median {raw['median']:g}")
        if crystal.get("skipped"):
            lines.append(f"skipped        {len(crystal['skipped'])} bad row(s); first: {crystal['skipped'][0]}")
    graph = report.get("graph")
    if graph:
        lines.append("nodes          " + ", ".join(f"{t} {n}" for t, n in graph["node_counts"].items()))
        lines.append("edges          " + ", ".join(f"{r} {n}" for r, n in graph["edge_counts"].items()))
        shares = dict(zip(report["class_names"], report["class_shares"]))
        for target, result in graph["homophily"].items():
            lines.append(f"homophily      {target} labels ({graph['homophily_labels']}, {result['labelled']} nodes); "
                         f"chance = class share")
            rows = {**result["relations"], **result["metapaths"]}
            names = report["class_names"]
            name_width = max([len(n) for n in rows] + [len("chance")])
            col = max(7, *(len(n) for n in names))
            lines.append(f"  {'path':<{name_width}}  {'pairs':>10}  {'cover':>6}  {'overall':>7}  "
                         + "  ".join(f"{n:>{col}}" for n in names))
            for path, h in rows.items():
                lines.append(f"  {path:<{name_width}}  {h['pairs']:>10}  {h['coverage']:>6.2f}  {_fmt(h['overall']):>7}  "
                             + "  ".join(f"{_fmt(h['per_class'][n]):>{col}}" for n in names))
            lines.append(f"  {'chance':<{name_width}}  {'':>10}  {'':>6}  {'':>7}  "
                         + "  ".join(f"{shares[n]:>{col}.2f}" for n in names))
            for path, why in result["skipped"].items():
                lines.append(f"  {path}: skipped ({why})")
        lines += _format_connectivity(graph["connectivity"], report["class_names"])
    return "\n".join(lines)


def _format_connectivity(conn: Dict[str, Any], names: List[str]) -> List[str]:
    if "skipped" in conn:
        return [f"components     skipped ({conn['skipped']})"]

    def per_class(counts):
        return ", ".join(f"{n}: {c}" for n, c in zip(names, counts) if c)

    lines = [f"components     {conn['components']} (edges undirected, all node types); the largest holds "
             f"{100 * conn['largest_share']:.1f}% of the nodes"]
    isolated = conn["isolated_labelled"]
    lines.append(f"isolated       {isolated} labelled node(s) without any edge"
                 + (f" ({per_class(conn['isolated_per_class'])})" if isolated else ""))
    for part in ("val", "test"):
        if f"{part}_unreached" in conn:
            cut = conn[f"{part}_unreached"]
            lines.append(f"unreached      {cut} of {conn[f'{part}_size']} {part} nodes lie in components without a "
                         "training node" + (f" ({per_class(conn[f'{part}_unreached_per_class'])})" if cut else ""))
    return lines


def format_recommendation(rec: Dict[str, Any], dataset: Optional[str] = None) -> List[str]:
    """The recommendation, the measured tables it rests on, and the hgimb.advise pointer."""
    hint = rec.get("advise", ADVISE_HINT).replace("DATASET", dataset or "DATASET")
    head = f"--remedy {rec['remedy']}" if rec["remedy"] else "no fixed remedy: search on validation"
    lines = [f"recommended    {head}", f"               {rec['why']}"]
    for item in rec.get("evidence", []):
        metric, digits = ("macro-F1", 2) if item["metric"] == "macro_f1" else ("PR-AUC", 3)
        mine = (f"{item['remedy']} rank {item['rank']}/{item['remedies']} ({item['score'][0]:.{digits}f} ± "
                f"{item['score'][1]:.{digits}f}), " if "rank" in item else "")
        none = "n/a" if item["none"] is None else f"{item['none']:.{digits}f}"
        lines.append(f"                 BENCHMARKS section {item['section']}, {item['table']}: {mine}best {item['best'][0]} "
                     f"{item['best'][1]:.{digits}f}, none {none} (test {metric}, {item['n']} seeds)")
    lines.append(f"               search: {hint}")
    return lines


# ---------------------------------------------------------------------------- CLI
def resolve_dataset(arg: str) -> str:
    """A dataset name, ``prefix:path``, or a path turned into ``crystal:`` / ``hgb:``."""
    from .data import registry as data_registry

    if data_registry.is_dataset_name(arg):
        return arg
    path = Path(arg).expanduser()
    if path.exists():
        if path.is_file() and path.suffix.lower() == ".csv" or (path.is_dir() and (path / "id_prop.csv").is_file()):
            return f"crystal:{arg}"
        looks_hgb = path.suffix.lower() == ".zip" or (path.is_dir() and (
            (path / "node.dat").is_file() or any(path.glob("*/node.dat"))))
        if looks_hgb and "hgb" in data_registry.PREFIXES:
            return f"hgb:{arg}"
        raise HgimbError(f"cannot tell the format of {arg}: expected a crystal directory (id_prop.csv), an "
                         f"id_prop .csv file or an HGB directory/zip (node.dat); or use crystal:<dir> / hgb:<path>")
    if "/" in arg or path.suffix.lower() in (".csv", ".zip"):
        raise HgimbError(f"{arg} not found")
    return arg  # let the registry report an unknown name with suggestions


def load_for_diagnosis(dataset: str, root=None, threshold: Optional[float] = None, skip_bad: bool = False,
                       quiet: bool = True):
    """Load ``dataset`` (name, prefix:path or path) with the crystal options its loader declares."""
    from .data.registry import load_configured

    return load_configured(resolve_dataset(dataset), root, threshold=threshold, skip_bad=skip_bad, quiet=quiet)


# ---------------------------------------------------------------------------- --thresholds
def parse_thresholds(text: str) -> List[float]:
    """``"300,500,600"`` -> ``[300.0, 500.0, 600.0]`` (finite numbers, at least one)."""
    values = []
    for token in str(text).split(","):
        try:
            value = float(token)
        except ValueError:
            raise HgimbError(f"--thresholds expects comma-separated numbers (e.g. 300,500,600), got '{token.strip()}'") from None
        if not np.isfinite(value):
            raise HgimbError(f"--thresholds: {token.strip()} is not a finite number")
        values.append(value)
    return values


def threshold_table(values: np.ndarray, thresholds: List[float]) -> List[Dict[str, Any]]:
    """Class counts and imbalance of the binary label ``value > T`` for every threshold T (the
    check_class_distribution step of choosing a threshold): negatives, positives, positive
    share, imbalance ratio (larger / smaller class; None when a class is empty), severity and
    the BCE ``pos_weight`` (negatives / positives)."""
    values = np.asarray(values, dtype=np.float64)
    rows = []
    for threshold in thresholds:
        positives = int((values > threshold).sum())
        negatives = int(values.size - positives)
        small, large = min(positives, negatives), max(positives, negatives)
        ratio = float(large / small) if small else None
        rows.append({"threshold": threshold, "negatives": negatives, "positives": positives,
                     "positive_share": positives / max(values.size, 1), "imbalance_ratio": ratio,
                     "severity": severity(ratio), "pos_weight": float(negatives / positives) if positives else None})
    return rows


def format_threshold_table(name: str, rows: List[Dict[str, Any]]) -> str:
    lines = [f"{name}: {rows[0]['negatives'] + rows[0]['positives']} samples, binary label = target > threshold",
             f"  {'threshold':>10} {'<= T':>7} {'> T':>7} {'positive %':>10} {'ratio':>8} {'severity':>9} {'pos_weight':>10}"]
    for row in rows:
        ratio = f"{row['imbalance_ratio']:.1f}:1" if row["imbalance_ratio"] is not None else "one class"
        weight = f"{row['pos_weight']:.2f}" if row["pos_weight"] is not None else "-"
        lines.append(f"  {row['threshold']:>10g} {row['negatives']:>7} {row['positives']:>7} "
                     f"{100 * row['positive_share']:>9.1f}% {ratio:>8} {row['severity']:>9} {weight:>10}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from .cli import ArgumentParser

    parser = ArgumentParser(
        prog="python -m hgimb.diagnose",
        description="Class counts, imbalance ratio and severity, recommended remedies, and (node tasks) "
                    "node/edge counts and label homophily per class, before training.",
    )
    parser.add_argument("dataset", help="dataset name, crystal:<dir>, hgb:<path>, or a path to an id_prop.csv / dir")
    parser.add_argument("--data-root", default=None, help="data root (default $HGIMB_DATA or ./datasets)")
    parser.add_argument("--threshold", type=float, default=None, help="crystal datasets: binary label = target > T")
    parser.add_argument("--thresholds", default=None, metavar="T1,T2,...",
                        help="crystal datasets: class counts and imbalance ratio for each threshold, in one table")
    parser.add_argument("--split", choices=("official", "stratified"), default=None,
                        help="count the training split of this split (default: all labelled items)")
    parser.add_argument("--imbalance-ratio", type=float, default=1.0,
                        help="with --split: make the training split long-tailed with this max/min ratio")
    parser.add_argument("--imbalance-type", choices=("long-tail", "step"), default="long-tail")
    parser.add_argument("--seed", type=int, default=0, help="split seed")
    parser.add_argument("--skip-bad", action="store_true", help="crystal datasets: drop bad rows instead of failing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import check_fields

    check_fields(seed=args.seed, imbalance_ratio=args.imbalance_ratio, threshold=args.threshold)
    if args.thresholds is not None:
        return _main_thresholds(args)
    if args.imbalance_ratio != 1.0 and args.split is None:
        args.split = "official"  # an imbalance split is applied to a split: the dataset's own one
    task = load_for_diagnosis(args.dataset, args.data_root, args.threshold, args.skip_bad, quiet=args.json)
    part = None
    if args.split is not None:
        from .data.splits import make_split

        task = make_split(task, split=args.split, imbalance_ratio=args.imbalance_ratio,
                          imbalance_type=args.imbalance_type, seed=args.seed)
        part = "train"
    report = diagnose(task, part=part)
    if args.json:
        print(json.dumps(report, indent=2, default=_json_default))
    else:
        print(format_report(report))
    return 0


def _main_thresholds(args) -> int:
    """``--thresholds``: one load, then the label's class counts per threshold."""
    if args.threshold is not None or args.split is not None:
        raise HgimbError("--thresholds tabulates whole-dataset counts; drop --threshold / --split")
    thresholds = parse_thresholds(args.thresholds)
    task = load_for_diagnosis(args.dataset, args.data_root, thresholds[0], args.skip_bad, quiet=True)
    values = task.meta.get("raw_target")
    if values is None:
        raise HgimbError(f"--thresholds applies to datasets with real-valued targets (crystal graphs); "
                         f"'{args.dataset}' has class labels")
    rows = threshold_table(values, thresholds)
    if args.json:
        print(json.dumps({"dataset": task.name, "thresholds": rows}, indent=2))
    else:
        print(format_threshold_table(task.name, rows))
    return 0


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


def main(argv: Optional[List[str]] = None) -> int:
    from .cli import guard

    return guard(_main)(argv)


if __name__ == "__main__":
    sys.exit(main())
