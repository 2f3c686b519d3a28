"""Per-structure feature cache and the helpers every crystal feature set shares.

A feature set computes, for each structure, a dict of arrays (``{"crystal": [D]}``,
``{"atom": [n_atoms, D]}``) or ``{"error": reason}``. :func:`per_structure` caches these by
the SHA-256 of the CIF's bytes (``task.meta["cif_hashes"]``, set by the crystal loader): one
cache entry per (feature set, version, parameters) maps hash -> result, so a second run
computes nothing and a changed CIF recomputes only itself. The entry is written atomically
(temp file + rename) after every chunk, so a killed run keeps the chunks it finished and never
leaves a half-written entry.
"""
from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from ..data import cache
from ..data.crystal import _default_workers
from ..errors import warn_data
from ..errors import HgimbError

NAMESPACE = "crystal-features"


def _require_crystals(task, name: str) -> None:
    if "cif_hashes" not in task.meta or "cif_paths" not in task.meta:
        raise HgimbError(f"--features {name} needs a crystal dataset (CIF files); '{task.name}' has none")


def _pool_map(fn: Callable, chunks: List[list], workers: int) -> List[list]:
    if workers <= 1 or len(chunks) <= 1:
        return [fn(chunk) for chunk in chunks]
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=multiprocessing.get_context(method)) as pool:
        return list(pool.map(fn, chunks))


def per_structure(task, name: str, version: int, params: dict, compute: Callable[[List[tuple]], List[dict]],
                  *, chunk_size: int = 128, workers: Optional[int] = None, quiet: bool = False,
                  retry_errors: bool = False) -> List[dict]:
    """Results of ``compute`` for every item of ``task`` (cached by CIF content).

    ``compute`` takes a list of ``(item_id, cif_text)`` and returns one dict per entry; with
    ``workers > 1`` chunks run in a process pool (fork), else in this process. ``retry_errors``:
    recompute cached error results (for a feature set whose code now handles more structures)."""
    _require_crystals(task, name)
    hashes: List[str] = list(task.meta["cif_hashes"])
    key = cache.cache_key("features", name, version, params)
    path = cache.cache_path(NAMESPACE, key)
    stored: Dict[str, dict] = {}
    if path.is_file():
        try:
            stored = torch.load(path, weights_only=False)["results"]
        except Exception:  # truncated or older format: recompute
            stored = {}
    ids = [str(i) for i in task.ids()]
    todo: Dict[str, tuple] = {}
    for digest, item_id, cif in zip(hashes, ids, task.meta["cif_paths"]):
        cached = stored.get(digest)
        if (cached is None or (retry_errors and "error" in cached)) and digest not in todo:
            todo[digest] = (item_id, cif)
    if todo:
        from tqdm.auto import tqdm

        workers = 1 if workers is None else workers
        order = list(todo)
        bar = tqdm(total=len(order), desc=f"features {name}", unit="cif", file=sys.stderr,
                   disable=quiet or not sys.stderr.isatty())
        step = chunk_size * max(1, workers)
        try:
            for start in range(0, len(order), step):
                batch = order[start:start + step]
                pairs = []
                for digest in batch:
                    item_id, cif = todo[digest]
                    with open(cif, "rb") as handle:
                        pairs.append((item_id, handle.read().decode("utf-8", errors="replace")))
                chunks = [pairs[i:i + chunk_size] for i in range(0, len(pairs), chunk_size)]
                results = [r for part in _pool_map(compute, chunks, workers) for r in part]
                stored.update(zip(batch, results))
                _save(path, stored)
                bar.update(len(batch))
        finally:
            bar.close()
    return [stored[h] for h in hashes]


def _save(path, stored: Dict[str, dict]) -> None:
    try:
        cache.save_atomic(path, {"results": stored})
    except OSError as exc:  # a cache we cannot write costs time next run, not this result
        warn_data(f"could not write the feature cache {path}: {exc}; set HGIMB_CACHE to a writable directory")


def drop_failed(task, results: List[dict], name: str, skip_bad: bool):
    """(task, results) without the structures whose result is an error: a one-line HgimbError
    naming them, or (``skip_bad``) a one-line warning and the rest of the task."""
    failed = [k for k, r in enumerate(results) if "error" in r]
    if not failed:
        return task, results
    ids = task.ids()
    first = failed[0]
    where = f"id {ids[first]} ({task.meta['cif_paths'][first]}): {results[first]['error']}"
    more = f" and {len(failed) - 1} more (ids {', '.join(str(ids[k]) for k in failed[1:6])}{', ...' if len(failed) > 6 else ''})" \
        if len(failed) > 1 else ""
    if not skip_bad:
        raise HgimbError(f"--features {name} cannot featurise {len(failed)} structure(s): {where}{more}; "
                         f"pass --skip-bad to drop them")
    warn_data(f"--features {name}: skipped {len(failed)} structure(s) it cannot featurise; first: {where}{more}")
    keep = np.ones(task.num_items, dtype=bool)
    keep[failed] = False
    return subset(task, keep), [r for r, k in zip(results, keep) if k]


def subset(task, keep: np.ndarray):
    """The task restricted to items where ``keep``; split indices are renumbered, and a dropped
    item simply leaves its split."""
    import copy

    index = np.flatnonzero(keep)
    position = np.cumsum(keep) - 1  # old item index -> new item index (where kept)
    new = copy.copy(task)
    new.split = {part: torch.from_numpy(position[idx.numpy()][keep[idx.numpy()]]).long()
                 for part, idx in task.split.items()}
    new.graphs = [task.graphs[i] for i in index]
    new.y = task.y[torch.from_numpy(index)]
    new.item_ids = np.asarray(task.ids())[index]
    meta = dict(task.meta)
    for field in ("raw_target", "cif_paths", "cif_hashes"):
        if field in meta and meta[field] is not None:
            values = meta[field]
            meta[field] = values[index] if isinstance(values, np.ndarray) else [values[i] for i in index]
    meta["skipped"] = list(meta.get("skipped", [])) + [f"id {i}" for i in np.asarray(task.ids())[~keep]]
    new.meta = meta
    if new.y.unique().numel() < 2:
        raise HgimbError(f"dataset '{task.name}': only one class left after dropping structures")
    return new.validate() if new.split else new


def attach_global(task, matrix: np.ndarray, names: List[str], source: str):
    """Append per-crystal features ``matrix`` ``[num_items, D]`` to every graph's ``u``."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if not np.isfinite(matrix).all():  # pragma: no cover - callers impute first
        raise HgimbError(f"--features {source}: non-finite values after imputation")
    rows = torch.from_numpy(matrix).split(1)
    for graph, row in zip(task.graphs, rows):
        old = getattr(graph, "u", None)
        graph.u = row if old is None else torch.cat([old, row], dim=1)
    meta = dict(task.meta)
    meta["global_features"] = list(meta.get("global_features", [])) + [f"{source}:{n}" for n in names]
    meta["global_feature_dim"] = len(meta["global_features"])
    task.meta = meta
    return task


def attach_atom(task, blocks: List[np.ndarray], source: str):
    """Append per-atom features (one ``[n_atoms, D]`` block per graph) to every graph's ``x``."""
    for k, (graph, block) in enumerate(zip(task.graphs, blocks)):
        if block.shape[0] != graph.num_nodes:
            raise HgimbError(f"--features {source}: structure id {task.ids()[k]} has {block.shape[0]} atoms in the "
                             f"pretrained model but {graph.num_nodes} in its crystal graph")
    sizes = [b.shape[0] for b in blocks]
    extra = torch.from_numpy(np.concatenate(blocks).astype(np.float32)).split(sizes)
    for graph, block in zip(task.graphs, extra):
        graph.x = torch.cat([graph.x, block], dim=1)
    meta = dict(task.meta)
    meta["node_feature_dim"] = int(task.graphs[0].x.size(1))
    meta["atom_feature_sources"] = list(meta.get("atom_feature_sources", [])) + [source]
    task.meta = meta
    return task


def impute_columns(matrix: np.ndarray) -> np.ndarray:
    """Non-finite entries -> the column's median over the finite ones (0 for an all-missing
    column). Label-free, so using every structure leaks nothing about the test labels."""
    matrix = np.array(matrix, dtype=np.float64)
    bad = ~np.isfinite(matrix)
    if bad.any():
        with np.errstate(all="ignore"):
            filled = np.where(bad, np.nan, matrix)
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                median = np.nanmedian(filled, axis=0)
        median = np.where(np.isfinite(median), median, 0.0)
        matrix[bad] = np.take(median, np.nonzero(bad)[1])
    return matrix


def default_workers() -> int:
    return _default_workers()
