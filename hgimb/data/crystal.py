"""Crystal graph datasets in the CGCNN format: ``id_prop.csv`` + ``atom_init.json`` + ``<id>.cif``.

A dataset directory holds
* ``id_prop.csv``: ``id,target`` per line, no header. Targets written as integers are class
  labels (any number of classes); any other number is a real value that ``threshold`` turns into
  the binary label ``target > threshold``.
* ``atom_init.json``: element feature vectors keyed by atomic number (CGCNN's 92-dim table);
  without it every atom gets a one-hot of its atomic number.
* ``<id>.cif`` for every id.

Graphs follow CGCNN: pymatgen parses each CIF, neighbours are searched with periodic images
within ``radius`` (``Structure.get_neighbor_list``), each atom keeps its ``max_neighbors``
nearest ones, and every edge carries a Gaussian expansion of its length (centres 0..radius in
steps of ``gaussian_step``, width ``gaussian_step``). A graph is a PyG ``Data(x, z, edge_index,
edge_attr, y, dist)`` (``z``: atomic numbers) whose edges point from the neighbour to the centre
atom (PyG's source -> target), so a convolution updates each atom from its neighbours.

Parsing is the slow part, so it runs in a process pool and is cached (``hgimb/data/cache.py``):
one cache entry per (dataset directory, radius, max_neighbors) maps the SHA-256 of each CIF's
bytes to its parsed graph (atomic numbers, neighbour list, distances) or to its parse error. A
second load of unchanged data parses nothing; a changed CIF re-parses only that file. Element
features and the Gaussian expansion are applied after the cache (cheap, vectorised), so
``atom_init.json`` and ``gaussian_step`` are not part of the key.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..config import field_param
from ..errors import DataWarning, HgimbError, warn_data  # noqa: F401  (DataWarning re-exported)
from ..params import Param, Range
from . import cache
from .registry import register_dataset, register_prefix
from .task import Task

CACHE_NAMESPACE = "crystal"
CACHE_VERSION = 1  # bump when the parsed-graph format changes
ONE_HOT_ELEMENTS = 118  # built-in features when atom_init.json is absent: one-hot of Z = 1..118
MAX_INTEGER_CLASSES = 50  # more distinct integer targets than this is a real value, not classes
_POOL_MIN_FILES = 32  # below this a process pool costs more than it saves


# ---------------------------------------------------------------------------- graph building
def gaussian_centers(radius: float, step: float) -> np.ndarray:
    """CGCNN's ``GaussianDistance`` filter: centres 0, step, ..., radius (inclusive)."""
    count = int(math.floor(radius / step + 1e-9)) + 1
    return np.arange(count, dtype=np.float64) * step


def gaussian_expand(dist, radius: float, step: float) -> torch.Tensor:
    """``exp(-(d - mu_k)^2 / step^2)`` for every distance and centre (CGCNN, var = step)."""
    centers = torch.as_tensor(gaussian_centers(radius, step), dtype=torch.float32)
    dist = torch.as_tensor(dist, dtype=torch.float32).reshape(-1, 1)
    out = (dist - centers).square_().mul_(-1.0 / step**2).exp_()  # in place: E x K can be large
    # far tails land in float32's subnormal range (< 1.2e-38), which makes every CPU matmul that
    # reads them several times slower; they carry no information, so flush them to exactly 0
    return out.masked_fill_(out < torch.finfo(torch.float32).tiny, 0.0)


def nearest_neighbors(center: np.ndarray, neighbor: np.ndarray, offsets: np.ndarray, dist: np.ndarray,
                      max_neighbors: int) -> np.ndarray:
    """Indices of the pairs to keep: per centre atom its ``max_neighbors`` nearest, nearest first.

    Ties in distance (common in symmetric crystals) are broken by neighbour index and image
    offset so the choice does not depend on the order pymatgen happens to return.
    """
    rounded = np.round(dist, 8)
    order = np.lexsort((offsets[:, 2], offsets[:, 1], offsets[:, 0], neighbor, rounded, center))
    sorted_center = center[order]
    group_start = np.searchsorted(sorted_center, sorted_center, side="left")
    rank = np.arange(len(order)) - group_start
    return order[rank < max_neighbors]


def _parse_cif(text: str, radius: float, max_neighbors: int) -> Dict[str, np.ndarray]:
    """Parse one CIF and build its neighbour list; raises on a structure we cannot use."""
    from pymatgen.core import Structure

    from pymatgen.core.periodic_table import DummySpecies

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about rounded coordinates in most CIFs
        try:
            structure = Structure.from_str(text, fmt="cif")
        except ZeroDivisionError:  # pymatgen's symmetry expansion of an empty atom-site loop
            raise ValueError("the CIF has no atom sites (no _atom_site_* loop with atoms)") from None
        except ValueError as exc:
            if "no structures" in str(exc):  # no atom-site loop at all
                raise ValueError("the CIF has no atom sites (no _atom_site_* loop with atoms)") from None
            raise
    if len(structure) == 0:
        raise ValueError("the structure has no atoms")
    dummies = sorted({sp.symbol for sp in structure.composition.elements if isinstance(sp, DummySpecies)})
    if dummies:  # pymatgen reads an unknown symbol as a dummy species with a meaningless Z
        raise ValueError(f"element symbol(s) {', '.join(repr(d) for d in dummies)} are not chemical elements")
    if not structure.is_ordered:
        raise ValueError("it has partially occupied sites; crystal graphs need one element per site")
    z = np.asarray(structure.atomic_numbers, dtype=np.int16)
    center, neighbor, offsets, dist = structure.get_neighbor_list(radius)
    keep = nearest_neighbors(np.asarray(center), np.asarray(neighbor), np.asarray(offsets),
                             np.asarray(dist), max_neighbors)
    edge_index = np.stack([neighbor[keep], center[keep]]).astype(np.int32)
    return {"z": z, "edge_index": edge_index, "dist": np.asarray(dist[keep], dtype=np.float32)}


def _parse_chunk(texts: List[str], radius: float, max_neighbors: int) -> List[dict]:
    """Worker: parse several CIFs, turning failures into ``{"error": message}`` entries."""
    out = []
    for text in texts:
        try:
            out.append(_parse_cif(text, radius, max_neighbors))
        except Exception as exc:  # any pymatgen failure is a property of the file, reported later
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            out.append({"error": message})
    return out


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _parse_all(texts: List[str], radius: float, max_neighbors: int, workers: int, quiet: bool) -> List[dict]:
    """Parse CIF texts (in a process pool when worth it), with a progress bar on a terminal."""
    from tqdm.auto import tqdm

    if not texts:
        return []
    disable = quiet or not sys.stderr.isatty()
    bar = tqdm(total=len(texts), desc="parsing CIFs", unit="cif", disable=disable, file=sys.stderr)
    try:
        if workers <= 1 or len(texts) < _POOL_MIN_FILES:
            results = []
            for start in range(0, len(texts), 16):
                results.extend(_parse_chunk(texts[start:start + 16], radius, max_neighbors))
                bar.update(len(texts[start:start + 16]))
            return results
        chunk = max(1, min(64, len(texts) // (workers * 8)))
        chunks = [texts[i:i + chunk] for i in range(0, len(texts), chunk)]
        # fork (Linux) avoids re-importing torch and pymatgen in every worker
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        context = multiprocessing.get_context(method)
        results = []
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=context) as pool:
            for part in pool.map(_parse_chunk, chunks, [radius] * len(chunks), [max_neighbors] * len(chunks)):
                results.extend(part)
                bar.update(len(part))
        return results
    finally:
        bar.close()


# ---------------------------------------------------------------------------- files
# DataWarning / warn_data live in hgimb.errors (one-line warnings about the user's data)


class _BadRows:
    """Collects bad rows: raises at once, or (skip_bad) remembers them for one warning."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.messages: List[str] = []

    def add(self, message: str) -> None:
        if not self.skip_bad:
            raise HgimbError(message + "; fix it or pass --skip-bad to drop bad rows")
        self.messages.append(message)


def _read_id_prop(path: Path, bad: _BadRows) -> List[Tuple[int, str, str, float]]:
    """Rows ``(line_number, id, target_text, target_value)`` of id_prop.csv, validated."""
    if not path.is_file():
        raise HgimbError(
            f"{path} not found; a crystal dataset directory needs id_prop.csv ('id,target' per line), "
            f"<id>.cif files and optionally atom_init.json"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise HgimbError(f"cannot read {path}: {exc}") from None
    rows, first_line = [], {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not fields[0]:
            bad.add(f"{path} line {number}: expected 'id,target', got {line.strip()!r}")
            continue
        item_id, token = fields
        try:
            value = float(token)
        except ValueError:
            hint = " (id_prop.csv has no header line)" if number == 1 else ""
            bad.add(f"{path} line {number}: target {token!r} of id {item_id} is not a number{hint}")
            continue
        if not math.isfinite(value):
            bad.add(f"{path} line {number}: target of id {item_id} is {token!r}, not a finite number")
            continue
        if item_id in first_line:
            bad.add(f"{path} line {number}: id {item_id} is listed twice (first on line {first_line[item_id]})")
            continue
        first_line[item_id] = number
        rows.append((number, item_id, token, value))
    return rows


def _atom_table(directory: Path) -> Tuple[torch.Tensor, torch.Tensor, str]:
    """(features [max_z + 1, dim], present [max_z + 1] bool, source name)."""
    path = directory / "atom_init.json"
    if not path.is_file():
        table = torch.zeros(ONE_HOT_ELEMENTS + 1, ONE_HOT_ELEMENTS)
        table[1:] = torch.eye(ONE_HOT_ELEMENTS)
        present = torch.ones(ONE_HOT_ELEMENTS + 1, dtype=torch.bool)
        present[0] = False
        return table, present, "one-hot"
    raw = path.read_bytes()
    try:
        entries = json.loads(raw)
        numbers = {int(k): np.asarray(v, dtype=np.float32).reshape(-1) for k, v in entries.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise HgimbError(f"{path} is not a JSON object of atomic number -> feature list: {exc}") from None
    for z, vector in sorted(numbers.items()):
        if not np.isfinite(vector).all():
            position = int(np.flatnonzero(~np.isfinite(vector))[0])
            raise HgimbError(f"{path}: element {z} has a non-finite feature value ({vector[position]} at position "
                             f"{position}); every feature must be a finite number")
    dims = {v.size for v in numbers.values()}
    if not numbers or len(dims) != 1:
        raise HgimbError(f"{path}: every element needs a feature vector of the same length (found lengths {sorted(dims)})")
    max_z = max(max(numbers), ONE_HOT_ELEMENTS)
    table = torch.zeros(max_z + 1, dims.pop())
    present = torch.zeros(max_z + 1, dtype=torch.bool)
    keys = torch.tensor(sorted(numbers))
    table[keys] = torch.from_numpy(np.stack([numbers[k] for k in sorted(numbers)]))
    present[keys] = True
    return table, present, "atom_init.json"


def _resolve_directory(root: Path, path: str | os.PathLike) -> Tuple[Path, Path]:
    """(dataset directory, id_prop file) for ``crystal:<path>``: a directory or a .csv file,
    as given, or relative to the data root or ``<root>/crystals``."""
    given = Path(path).expanduser()
    candidates = [given]
    if not given.is_absolute():
        candidates += [root / given, root / "crystals" / given]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate, candidate / "id_prop.csv"
        if candidate.is_file() and candidate.suffix.lower() == ".csv":
            return candidate.parent, candidate
    raise HgimbError(f"crystal dataset {path} not found (looked for a directory or an id_prop .csv file "
                     f"there, under the data root {root} and under {root / 'crystals'})")


def _missing_elements(z: np.ndarray, known: np.ndarray, row, directory: Path, bad: "_BadRows") -> None:
    from pymatgen.core.periodic_table import Element

    zs = sorted({int(v) for v in z if v >= known.size or not known[v]})
    symbols = ", ".join(f"{Element.from_Z(v).symbol} (Z={v})" if 0 < v <= 118 else f"Z={v}" for v in zs)
    bad.add(f"{row[5]} (id {row[1]}) contains {symbols}, missing from {directory / 'atom_init.json'}")


def _data(**values):
    """A PyG ``Data`` holding ``values``. Filling its store directly skips ``Data.__setattr__``'s
    per-attribute bookkeeping, which took a third of a cached load of 2,186 graphs; the result
    is the same object ``Data(**values)`` builds (tested)."""
    from torch_geometric.data import Data

    data = Data()
    data._store._mapping.update(values)
    return data


def _edge_features(entry_key: str, hashes: List[str], dist: torch.Tensor, radius: float, step: float) -> torch.Tensor:
    """Gaussian edge features of all graphs, cached and memory-mapped.

    The expansion is E x K floats (464k edges x 41 centres for magnetic-tc) and took half a
    cached load to compute; the cache entry is keyed by the parsed-graph entry, the exact list of
    graphs (their CIF hashes, in order) and the filter, and is read with ``mmap`` (pages load
    lazily, so a second load costs almost nothing)."""
    key = cache.cache_key("crystal-edges", CACHE_VERSION, entry_key, cache.content_hash("\n".join(hashes).encode()),
                          radius, step)
    path = cache.cache_path(CACHE_NAMESPACE, key)
    if path.is_file():
        try:
            stored = torch.load(path, mmap=True, weights_only=True)
            if tuple(stored.shape) == (dist.numel(), len(gaussian_centers(radius, step))):
                return stored
        except Exception:  # truncated or from an older format: rebuild
            pass
    out = gaussian_expand(dist, radius, step)
    try:
        cache.save_atomic(path, out)
    except OSError:  # unwritable cache: the graph cache already warned
        pass
    return out


# ---------------------------------------------------------------------------- loader
def _labels(values: np.ndarray, tokens: List[str], threshold: Optional[float], source: Path):
    """(y, class_names) from raw targets: thresholded reals, or integer class labels."""
    if threshold is not None:
        y = (values > threshold).astype(np.int64)
        if y.min() == y.max():
            raise HgimbError(
                f"--threshold {threshold:g} puts all {len(y)} samples of {source} in one class "
                f"(targets range {values.min():g} .. {values.max():g}); choose a threshold inside that range"
            )
        return y, [f"<={threshold:g}", f">{threshold:g}"]

    def is_integer(token: str) -> bool:
        try:
            int(token)
            return True
        except ValueError:
            return False

    if not all(is_integer(t) for t in tokens):
        example = next(t for t in tokens if not is_integer(t))
        raise HgimbError(
            f"{source} has real-valued targets (e.g. {example}, range {values.min():g} .. {values.max():g}); "
            f"pass --threshold T to classify target > T"
        )
    classes, y = np.unique(values.astype(np.int64), return_inverse=True)
    if len(classes) < 2:
        raise HgimbError(f"{source}: every sample has class {classes[0]}; need at least 2 classes")
    if len(classes) > MAX_INTEGER_CLASSES:
        raise HgimbError(
            f"{source} has {len(classes)} distinct integer targets; if it is a real-valued property "
            f"pass --threshold T to classify target > T"
        )
    return y.astype(np.int64), [str(c) for c in classes]


def load_crystal_dir(directory: Path, *, name: str, id_prop: Optional[Path] = None,
                     threshold: Optional[float] = None, radius: float = 8.0, max_neighbors: int = 12,
                     gaussian_step: float = 0.2, skip_bad: bool = False, workers: Optional[int] = None,
                     quiet: bool = False) -> Task:
    """Load a CGCNN-format directory into a graph Task (see the module docstring); arguments as
    :data:`PARAMS` declares them."""
    directory = Path(directory)
    id_prop = Path(id_prop) if id_prop is not None else directory / "id_prop.csv"
    # each argument's own type and range: PARAMS, checked by the registry; this one involves two
    if not gaussian_step <= radius:
        raise HgimbError(f"--gaussian-step must be in (0, radius={radius:g}], got {gaussian_step}")
    workers = _default_workers() if workers is None else workers

    bad = _BadRows(skip_bad)
    rows = _read_id_prop(id_prop, bad)

    # CIF bytes and their hashes (the per-file cache key); a missing file is a bad row. Plain
    # string paths: pathlib's joins cost a quarter of a cached load over 2,186 files.
    texts, hashes, kept, cif_paths = [], [], [], []
    folder = os.path.join(str(directory), "")
    for number, item_id, token, value in rows:
        cif = folder + item_id + ".cif"
        if os.path.basename(item_id) != item_id or item_id in (".", ".."):
            bad.add(f"{id_prop} line {number}: id {item_id!r} is not a plain file name; ids name "
                    f"<id>.cif files inside {directory}")
            continue
        try:
            with open(cif, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            bad.add(f"{cif} not found (id {item_id}, {id_prop.name} line {number})")
            continue
        except OSError as exc:
            bad.add(f"{cif} cannot be read (id {item_id}, {id_prop.name} line {number}): {exc.strerror or exc}")
            continue
        texts.append(data)
        hashes.append(cache.content_hash(data))
        kept.append((number, item_id, token, value))
        cif_paths.append(cif)

    # the cache: one entry per (directory, graph parameters), file hash -> parsed graph
    entry_key = cache.cache_key("crystal-graphs", CACHE_VERSION, str(directory.resolve()), radius, max_neighbors)
    entry_path = cache.cache_path(CACHE_NAMESPACE, entry_key)
    parsed: Dict[str, dict] = {}
    if entry_path.is_file():
        try:
            parsed = torch.load(entry_path, weights_only=False)["graphs"]
        except Exception:  # truncated or from an older format: rebuild
            parsed = {}
    todo = sorted({h for h in hashes if h not in parsed})
    if todo:
        text_of = dict(zip(hashes, texts))
        results = _parse_all([text_of[h].decode("utf-8", errors="replace") for h in todo],
                             radius, max_neighbors, workers, quiet)
        parsed.update(zip(todo, results))
    wanted = set(hashes)
    if todo or set(parsed) != wanted:  # store exactly the current files' graphs
        try:
            cache.save_atomic(entry_path, {"version": CACHE_VERSION, "graphs": {h: parsed[h] for h in wanted}})
        except OSError as exc:  # an unwritable cache costs time on the next run, not this result
            warn_data(f"could not write the crystal graph cache {entry_path}: {exc}; set HGIMB_CACHE "
                      f"to a writable directory")

    # rows whose CIF failed to parse are bad rows
    table, present, feature_source = _atom_table(directory)
    ok = []
    for (number, item_id, token, value), digest, cif in zip(kept, hashes, cif_paths):
        graph = parsed[digest]
        if "error" in graph:
            bad.add(f"{cif} (id {item_id}) does not parse as a crystal structure: {graph['error']}")
            continue
        ok.append((number, item_id, token, value, digest, cif))
    # ... and so are rows with an element that has no feature vector (one vectorised check)
    final, graphs_np = [], []
    if ok:
        z_ok = np.concatenate([parsed[row[4]]["z"] for row in ok]).astype(np.int64)
        sizes = np.array([parsed[row[4]]["z"].size for row in ok])
        known = present.numpy()
        missing_atom = (z_ok >= known.size) | ~known[np.minimum(z_ok, known.size - 1)]
        graph_of_atom = np.repeat(np.arange(len(ok)), sizes)
        has_missing = np.bincount(graph_of_atom[missing_atom], minlength=len(ok)) > 0
        for k, row in enumerate(ok):
            if has_missing[k]:
                _missing_elements(parsed[row[4]]["z"], known, row, directory, bad)
                continue
            final.append(row)
            graphs_np.append(parsed[row[4]])

    if bad.messages:
        warn_data(f"crystal dataset {directory}: skipped {len(bad.messages)} bad row(s); first: {bad.messages[0]}")
    if not final:
        raise HgimbError(f"crystal dataset {directory}: no usable samples left"
                         + (f" ({len(bad.messages)} bad row(s) skipped)" if bad.messages else ""))

    values = np.array([row[3] for row in final], dtype=np.float64)
    y, class_names = _labels(values, [row[2] for row in final], threshold, id_prop)

    # assemble all graphs at once (vectorised features and Gaussian expansion), then split
    num_atoms = [len(g["z"]) for g in graphs_np]
    num_edges = [g["dist"].size for g in graphs_np]
    z_all = torch.from_numpy(np.concatenate([g["z"] for g in graphs_np]).astype(np.int64))
    dist_all = torch.from_numpy(np.concatenate([g["dist"] for g in graphs_np]))
    edge_index_all = torch.from_numpy(np.concatenate([g["edge_index"] for g in graphs_np], axis=1).astype(np.int64))
    x_all = table[z_all].split(num_atoms)
    final_hashes = [row[4] for row in final]
    edge_attr_all = _edge_features(entry_key, final_hashes, dist_all, radius, gaussian_step).split(num_edges)
    dist_split = dist_all.split(num_edges)
    edge_index_split = edge_index_all.split(num_edges, dim=1)

    graphs = [
        _data(x=x, z=zs, edge_index=ei, edge_attr=ea, y=label, dist=d, num_nodes=n)
        for x, zs, ei, ea, d, label, n in zip(x_all, z_all.split(num_atoms), edge_index_split, edge_attr_all,
                                              dist_split, torch.from_numpy(y).split(1), num_atoms)
    ]
    meta = {
        "source": str(directory),
        "id_prop": str(id_prop),
        "threshold": threshold,
        "raw_target": values,
        "graph_params": {"radius": radius, "max_neighbors": max_neighbors, "gaussian_step": gaussian_step},
        "atom_features": feature_source,
        "node_feature_dim": int(table.size(1)),
        "edge_feature_dim": int(len(gaussian_centers(radius, gaussian_step))),
        "skipped": list(bad.messages),
        "parsed_files": len(todo),
        "cache_file": str(entry_path),
        # per item: the CIF file and the SHA-256 of its bytes (feature caches key on it)
        "cif_paths": [row[5] for row in final],
        "cif_hashes": final_hashes,
    }
    return Task(
        name=name,
        kind="graph",
        class_names=class_names,
        y=torch.from_numpy(y),
        split={},
        graphs=graphs,
        target_types=[],
        item_ids=np.array([row[1] for row in final]),
        meta=meta,
    )


# the crystal flags are RunConfig fields too: default, range and help live there (config.field_param)
PARAMS = (
    field_param("threshold"), field_param("radius"), field_param("max_neighbors"), field_param("gaussian_step"),
    field_param("skip_bad"),
    Param("workers", int, None, "CIF-parsing processes (default: the CPUs this process may use)", Range(1), none=True),
    field_param("quiet"),
)


@register_prefix("crystal", "a CGCNN-format directory: id_prop.csv, atom_init.json, <id>.cif", PARAMS)
def load_crystal(root: Path, *, path=None, **options) -> Task:
    """``crystal:<dir>`` (or ``crystal:<dir>/id_prop.csv``); ``options`` as :data:`PARAMS` declares them."""
    if path is None:
        raise HgimbError("crystal dataset needs a path: crystal:<dir>")
    directory, id_prop = _resolve_directory(Path(root), path)
    return load_crystal_dir(directory, name=f"crystal:{path}", id_prop=id_prop, **options)


def _named(name: str, help: str):
    def loader(root: Path, **options) -> Task:
        directory = Path(root) / "crystals" / name
        if not directory.is_dir():
            raise HgimbError(f"dataset '{name}' not found at {directory}; set HGIMB_DATA (or --data-root) to a "
                             f"data root holding crystals/{name}/")
        return load_crystal_dir(directory, name=name, **options)

    loader.__name__ = f"load_{name.replace('-', '_')}"
    loader.__doc__ = help
    return register_dataset(name, help, PARAMS)(loader)


_named("magnetic-tc", "2,186 crystals, magnetic transition temperature in K (pass --threshold, e.g. 600)")
_named("cgcnn-sample", "10 crystals with binary labels (CGCNN sample set; for quick tests)")
