"""Sparse vs dense embedding training on Freebase, mini-batch RGCN and GAT -> BENCHMARKS.md ``sparse``.

    python scripts/bench_sparse.py --seeds 0-4            # run what is missing, rewrite the table
    python scripts/bench_sparse.py --report-only          # rewrite the table from the stored runs
    python scripts/bench_sparse.py --models rgcn --seeds 0-1

Freebase has no node attributes: every node type trains a learnable id table. Grid: the official
HGB split and its training part made long-tailed (imbalance ratio 10); RGCN and GAT with their
``configs/hgb/freebase-*.yaml`` architecture (hidden, heads, layers, dropout, weight decay),
trained on mini-batches of 128 seeds with fanout 10,10 at lr 0.002 (the mini-batch learning rate
of the "Mini-batch training" section), 200 epochs, patience 50, model selection on validation
macro-F1, remedy none; ``--sparse-embeddings off`` (dense gradients, torch Adam) against ``on``
(row-sparse gradients, :class:`hgimb.engine.optim.LazyAdam`). Same seeds on both sides.
``--weight-decay W`` runs the same cells with another weight decay (rows of their own).

Runs go through the bench runner (:func:`hgimb.benchkit.docs.run_recording_load`), one at a time
in this process with one torch thread; the store is ``bench/sparse/results.jsonl`` (finished runs
are skipped, so an interrupted grid resumes), with the machine's load average after each run in
``bench/sparse/loadavg.jsonl``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import pandas as pd

from hgimb.benchkit import load_results, parse_seeds
from hgimb.benchkit.docs import load_averages, load_range, mean_std, replace_section, run_recording_load, table

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "bench" / "sparse"
SECTION = "sparse"
SETTINGS = {"official split": 1.0, "imbalance ratio 10": 10.0}
MODES = ("off", "on")
MODELS = ("rgcn", "gat")
BASE = dict(dataset="freebase", epochs=200, patience=50, lr=0.002, monitor="macro_f1", batch_size=128, fanout="10,10",
            remedy="none", quiet=True, plots=False)


def config(model: str, setting: str, mode: str, seed: int, weight_decay=None):
    from hgimb.config import RunConfig

    arch = RunConfig.read_yaml(ROOT / "configs" / "hgb" / f"freebase-{model}.yaml")
    keep = {k: arch[k] for k in ("hidden", "heads", "layers", "dropout", "weight_decay") if k in arch}
    if weight_decay is not None:
        keep["weight_decay"] = float(weight_decay)
    return RunConfig(**{**BASE, **keep}, model=model, seed=seed, imbalance_ratio=SETTINGS[setting],
                     sparse_embeddings=mode)


def render(frame: pd.DataFrame, loads: dict) -> str:
    import torch

    setting = {ratio: label for label, ratio in SETTINGS.items()}
    frame = frame.assign(setting=frame["imbalance_ratio"].map(setting), sparse=frame["sparse_embeddings"])
    frame = frame.assign(_m=frame["model"].map(MODELS.index), _s=frame["setting"].map(list(SETTINGS).index),
                         _p=frame["sparse"].map(MODES.index)).sort_values(["_m", "_s", "_p"], kind="stable")
    frame = frame.assign(wd=frame["weight_decay"].map(lambda v: f"{v:g}"))
    frame = frame.sort_values(["_m", "_s", "weight_decay", "_p"], ascending=[True, True, False, True], kind="stable")
    body = table(frame, [("model", "model"), ("Freebase", "setting"), ("weight decay", "wd"),
                         ("--sparse-embeddings", "sparse")], [
        ("test macro-F1", lambda r: mean_std(r["test_macro_f1"], 2, 100)),
        ("balanced acc.", lambda r: mean_std(r["test_balanced_accuracy"], 2, 100)),
        ("s/epoch", lambda r: mean_std(r["seconds_per_epoch"], 3)),
        ("best epoch", lambda r: f"{r['best_epoch'].mean():.0f}"),
        ("n", lambda r: str(len(r))),
    ])
    seeds = sorted(frame["seed"].unique().tolist())
    note = (f"\n\n_Measured with `python scripts/bench_sparse.py`: mini-batch 128 seeds, fanout 10,10, lr 0.002, "
            f"200 epochs, patience 50, remedy none, architecture from `configs/hgb/freebase-<model>.yaml`; seeds "
            f"{seeds}, mean ± sample std over seeds; {len(frame)} runs on {os.cpu_count()} CPU cores "
            f"({platform.machine()}), torch {torch.__version__}, one torch thread, one run at a time; 1-minute "
            f"load average {load_range(frame['run_id'], loads)} (the machine was shared: seconds per epoch are "
            f"inflated alike on both sides)._")
    return body + note


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated, from: " + ", ".join(SETTINGS))
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="instead of the config file's (its runs join the table as rows of their own)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--store", default=str(STORE), help="bench store directory")
    parser.add_argument("--doc", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    os.environ["HGIMB_THREADS"] = "1"  # the table says "one torch thread"
    store = Path(args.store)
    seeds = parse_seeds(args.seeds)
    models = [m for m in args.models.split(",") if m]
    settings = [s for s in args.settings.split(",") if s]
    if not args.report_only:
        # seed-major: an interrupted grid still has every cell at fewer seeds; the load average goes
        # beside the store (loadavg.jsonl): a run's row does not record the machine's load
        run_recording_load([config(model, setting, mode, seed, args.weight_decay) for seed in seeds
                            for model in models for setting in settings for mode in MODES], store)
    frame = load_results(store) if (store / "results.jsonl").is_file() else pd.DataFrame()
    frame = frame[frame["status"] == "ok"] if not frame.empty else frame
    if frame.empty:
        print("no stored runs; run without --report-only first", file=sys.stderr)
        return 1
    text = render(frame, load_averages(store))
    if args.doc:
        replace_section(Path(args.doc), SECTION, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
