"""DGL parity: hgimb's PyG models against their DGL twins on the official HGB split of ACM and
Freebase.

    python scripts/bench_dgl_parity.py                  # ACM + Freebase, rgcn/dgl-rgcn, gat/dgl-gat, seeds 0-4
    python scripts/bench_dgl_parity.py --report-only    # rewrite the table from the store

Each pair trains with the same file, ``configs/hgb/<dataset>-<model>.yaml`` (``rgcn`` for
``rgcn`` and ``dgl-rgcn``, ``gat`` for ``gat`` and ``dgl-gat``), only ``model`` replaced, so the
comparison is like for like (split, hidden size, heads, dropout, lr, weight decay, epochs,
early stopping). Runs go through the resumable bench runner (store ``bench/dgl-parity``) in
one process, seed-major (every model gets seed 0 before any gets seed 1), so an interrupted
grid still compares equal numbers of seeds. The table (test macro-F1 / micro-F1, mean ± sample
std, seconds per epoch side by side) goes into BENCHMARKS.md between ``<!-- table:dgl-parity -->``
markers. Needs DGL (``pip install -e ".[dgl]"``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DGLBACKEND", "pytorch")

from hgimb.benchkit import load_results, parse_seeds, run_grid  # noqa: E402
from hgimb.benchkit.docs import machine, mean_std, replace_section  # noqa: E402
from hgimb.config import RunConfig  # noqa: E402
from hgimb.errors import HgimbError  # noqa: E402

DATASETS = ("acm", "freebase")
PAIRS = (("rgcn", "dgl-rgcn"), ("gat", "dgl-gat"))  # (PyG model = config name, DGL twin)
STORE = ROOT / "bench" / "dgl-parity"


def configs_for(datasets, seeds):
    bases = {(d, m): RunConfig.from_yaml(ROOT / "configs" / "hgb" / f"{d}-{m}.yaml")
             for d in datasets for m, _ in PAIRS}
    return [bases[(d, pyg)].replace(model=model, seed=seed)
            for seed in seeds for d in datasets for pyg, dgl_model in PAIRS for model in (pyg, dgl_model)]


SETTINGS = ("dataset", "model", "seed", "remedy", "split", "imbalance_ratio", "hidden", "layers", "heads", "dropout",
            "lr", "weight_decay", "epochs", "patience", "monitor", "features", "batch_size")


def setting_key(values) -> tuple:
    return tuple(str(values.get(k)) for k in SETTINGS)


def welch_p(a: pd.Series, b: pd.Series) -> str:
    """Two-sided Welch t-test of the macro-F1 difference ("-" below two seeds a side)."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return "-"
    return f"{ttest_ind(a.astype(float), b.astype(float), equal_var=False).pvalue:.2f}"


def time_ratio(a: pd.DataFrame, b: pd.DataFrame) -> str:
    """Median over seeds of DGL s/epoch / PyG s/epoch (the two runs of a seed ran back to back,
    under about the same machine load)."""
    ratio = (b.set_index("seed")["seconds_per_epoch"] / a.set_index("seed")["seconds_per_epoch"]).dropna()
    return f"{ratio.median():.2f}" if len(ratio) else "-"


def paired(frame: pd.DataFrame) -> pd.DataFrame:
    """Only (dataset, seed) runs whose twin (the other library's model) finished too."""
    twin = {m: t for pair in PAIRS for m, t in (pair, pair[::-1])}
    done = set(zip(frame["dataset"], frame["model"], frame["seed"]))
    keep = [(d, twin[m], s) in done for d, m, s in zip(frame["dataset"], frame["model"], frame["seed"])]
    return frame[keep]


def render(frame: pd.DataFrame) -> str:
    header = ["dataset", "model", "PyG (hgimb) macro-F1", "DGL macro-F1", "Δ macro-F1", "p (Welch)", "PyG micro-F1",
              "DGL micro-F1",
              "PyG s/epoch", "DGL s/epoch", "DGL / PyG s/epoch (median per seed)", "epochs run (PyG / DGL)", "n (PyG / DGL)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for dataset in [d for d in DATASETS if d in set(frame["dataset"])]:
        for pyg, dgl_model in PAIRS:
            a = frame[(frame["dataset"] == dataset) & (frame["model"] == pyg)]
            b = frame[(frame["dataset"] == dataset) & (frame["model"] == dgl_model)]
            if a.empty:
                continue
            delta = (b["test_macro_f1"].mean() - a["test_macro_f1"].mean()) * 100 if len(a) and len(b) else float("nan")
            lines.append("| " + " | ".join([
                dataset, f"{pyg} / {dgl_model}",
                mean_std(a["test_macro_f1"], 2, 100), mean_std(b["test_macro_f1"], 2, 100),
                "-" if delta != delta else f"{delta:+.2f}", welch_p(a["test_macro_f1"], b["test_macro_f1"]),
                mean_std(a["test_micro_f1"], 2, 100), mean_std(b["test_micro_f1"], 2, 100),
                mean_std(a["seconds_per_epoch"], 3), mean_std(b["seconds_per_epoch"], 3), time_ratio(a, b),
                f"{a['epochs_run'].mean():.0f} / {b['epochs_run'].mean():.0f}" if len(a) and len(b) else "-",
                f"{len(a)} / {len(b)}",
            ]) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    parser.add_argument("--store", default=str(STORE))
    args = parser.parse_args()
    datasets = [d for d in args.datasets.split(",") if d]
    seeds = parse_seeds(args.seeds)
    if not args.report_only:
        try:
            from hgimb.data.dgl_io import import_dgl

            import_dgl("scripts/bench_dgl_parity.py")
        except HgimbError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        run_grid(configs_for(datasets, seeds), Path(args.store), workers=1, quiet=True)
    frame = load_results(Path(args.store))
    frame = frame[frame["status"] == "ok"]
    # rows of the current config files, matched on the settings that define a run here (not the
    # run id: it also hashes RunConfig fields added later, with their defaults)
    current = {setting_key(c.to_dict()) for c in configs_for(DATASETS, sorted(set(frame["seed"])))}
    frame = frame[[setting_key(row) in current for row in frame.to_dict(orient="records")]]
    frame = paired(frame)
    if frame.empty:
        print("no finished runs in the store", file=sys.stderr)
        return 1
    import dgl
    import torch_geometric

    text = render(frame)
    done = sorted(frame["seed"].unique().tolist())
    text += (f"\n\n_Measured with `python scripts/bench_dgl_parity.py` (configs `configs/hgb/<dataset>-rgcn.yaml` / "
             f"`-gat.yaml`, only `model` replaced), seeds {done}, on {machine()}, DGL {dgl.__version__}, "
             f"PyG {torch_geometric.__version__}, one process, one torch thread; mean ± sample std over the seeds both models of a row finished; "
             f"{len(frame)} runs. Seconds per epoch include one validation pass; the machine was shared with "
             f"other jobs, so compare them within a row only._")
    print(text)
    if not args.no_write:
        replace_section(ROOT / "BENCHMARKS.md", "dgl-parity", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
