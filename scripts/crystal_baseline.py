"""Non-GNN baseline for magnetic-tc (Tc > 600 K): a random forest on composition features.

    python scripts/crystal_baseline.py            # writes the 'crystal-baseline' table in BENCHMARKS.md
    python scripts/crystal_baseline.py --cached-load   # only: seconds of a cached load (3 repeats)

Features per structure (pymatgen): element fractions, volume per atom, density, atoms per cell.
Evaluated on exactly the test splits the GNN benchmark uses (hgimb's stratified 80/10/10 split,
seeds 0-4; the forest trains on train+val since it needs no early stopping), with and without
class_weight='balanced'. Also times the first (uncached) and second (cached) crystal load.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hgimb.benchkit.docs import machine, mean_std, replace_section
from hgimb.data import data_root, load_dataset
from hgimb.data.splits import make_split

ROOT = Path(__file__).resolve().parents[1]

THRESHOLD = 600.0
SEEDS = range(5)


def composition_features(directory: Path, ids) -> np.ndarray:
    from pymatgen.core import Element, Structure

    numbers = []
    rows = []
    for item in ids:  # one CIF parse per structure: this is a baseline script, not a hot path
        structure = Structure.from_file(str(directory / f"{item}.cif"))
        fractions = structure.composition.fractional_composition.get_el_amt_dict()
        vector = np.zeros(103)
        for symbol, share in fractions.items():
            vector[Element(symbol).Z - 1] = share
        rows.append(np.concatenate([vector, [structure.volume / len(structure), structure.density, len(structure)]]))
        numbers.append(len(structure))
    return np.asarray(rows)


def timed_loads() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["HGIMB_CACHE"] = cache
        start = time.perf_counter()
        load_dataset("magnetic-tc", threshold=THRESHOLD, quiet=True)
        first = time.perf_counter() - start
        start = time.perf_counter()
        task = load_dataset("magnetic-tc", threshold=THRESHOLD, quiet=True)
        second = time.perf_counter() - start
    os.environ.pop("HGIMB_CACHE")
    return first, second, task


def cached_load_seconds(repeats: int = 3) -> list:
    """Wall seconds of ``repeats`` loads of magnetic-tc from the user's cache (warmed first)."""
    load_dataset("magnetic-tc", threshold=THRESHOLD, quiet=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        load_dataset("magnetic-tc", threshold=THRESHOLD, quiet=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    if "--cached-load" in sys.argv:  # python scripts/crystal_baseline.py --cached-load
        times = cached_load_seconds()
        print(f"cached load of magnetic-tc (2,186 structures): {', '.join(f'{t:.2f}' for t in times)} s "
              f"(min {min(times):.2f} s) on {machine()}")
        return 0
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import average_precision_score, f1_score, recall_score, roc_auc_score

    first, second, task = timed_loads()
    directory = data_root() / "crystals" / "magnetic-tc"
    features = composition_features(directory, task.ids())
    y = task.y.numpy()
    results = {name: {k: [] for k in ("pr", "roc", "f1", "recall")} for name in ("rf", "rf-balanced")}
    for seed in SEEDS:
        split = make_split(task, split="stratified", seed=seed)
        train = np.concatenate([split.split["train"].numpy(), split.split["val"].numpy()])
        test = split.split["test"].numpy()
        for name, weight in (("rf", None), ("rf-balanced", "balanced")):
            forest = RandomForestClassifier(n_estimators=500, class_weight=weight, random_state=seed, n_jobs=-1)
            forest.fit(features[train], y[train])
            p1 = forest.predict_proba(features[test])[:, 1]
            pred = (p1 >= 0.5).astype(int)
            results[name]["pr"].append(average_precision_score(y[test], p1))
            results[name]["roc"].append(roc_auc_score(y[test], p1))
            results[name]["f1"].append(f1_score(y[test], pred))
            results[name]["recall"].append(recall_score(y[test], pred))
    import pandas as pd

    lines = ["| baseline | PR-AUC | ROC-AUC | F1 (positive) | recall (positive) |", "|---|---|---|---|---|"]
    for name, label in (("rf", "random forest, composition (500 trees)"),
                        ("rf-balanced", "random forest, class_weight='balanced'")):
        r = {k: pd.Series(v) for k, v in results[name].items()}
        lines.append(f"| {label} | {mean_std(r['pr'])} | {mean_std(r['roc'])} | {mean_std(r['f1'])} | {mean_std(r['recall'])} |")
    text = "\n".join(lines)
    text += (f"\n\nLoading the {task.num_items} structures: first (uncached) load {first:.1f} s, "
             f"second (cached) load {second:.2f} s.\n\n_Measured with `python scripts/crystal_baseline.py`, "
             f"seeds {list(SEEDS)} (the same test splits as the CGCNN table), on {machine()}._")
    replace_section(ROOT / "BENCHMARKS.md", "crystal-baseline", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
