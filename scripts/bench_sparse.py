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

Runs happen in this process, one at a time, one torch thread; each finished run is appended to
``runs/bench-sparse/results.jsonl`` and skipped next time (an interrupted grid resumes).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_docs import mean_std, replace_section, table  # noqa: E402
from hgimb.benchkit import parse_seeds  # noqa: E402

STORE = ROOT / "runs" / "bench-sparse" / "results.jsonl"
SECTION = "sparse"
SETTINGS = {"official split": 1.0, "imbalance ratio 10": 10.0}
MODES = ("off", "on")
MODELS = ("rgcn", "gat")
BASE = dict(dataset="freebase", epochs=200, patience=50, lr=0.002, monitor="macro_f1", batch_size=128, fanout="10,10",
            remedy="none", quiet=True, plots=False)


def load_store(store: Path) -> list:
    if not store.exists():
        return []
    return [json.loads(line) for line in store.read_text().splitlines() if line.strip()]


def config(model: str, setting: str, mode: str, seed: int):
    from hgimb.config import RunConfig

    arch = RunConfig.read_yaml(ROOT / "configs" / "hgb" / f"freebase-{model}.yaml")
    keep = {k: arch[k] for k in ("hidden", "heads", "layers", "dropout", "weight_decay") if k in arch}
    return RunConfig(**{**BASE, **keep}, model=model, seed=seed, imbalance_ratio=SETTINGS[setting],
                     sparse_embeddings=mode)


def run_one(model: str, setting: str, mode: str, seed: int) -> dict:
    from hgimb.engine import run_experiment

    start = time.perf_counter()
    metrics = run_experiment(config(model, setting, mode, seed), write=False).metrics
    return {"model": model, "setting": setting, "sparse": mode, "seed": seed,
            "test_macro_f1": metrics["test"]["macro_f1"], "test_balanced_accuracy": metrics["test"]["balanced_accuracy"],
            "seconds_per_epoch": metrics["seconds_per_epoch"], "epochs_run": metrics["epochs_run"],
            "best_epoch": metrics["best_epoch"], "wall_seconds": time.perf_counter() - start,
            "loadavg": list(os.getloadavg())}


def render(rows: list) -> str:
    import torch

    frame = pd.DataFrame(rows)
    frame = frame.assign(_m=frame["model"].map(MODELS.index), _s=frame["setting"].map(list(SETTINGS).index),
                         _p=frame["sparse"].map(MODES.index)).sort_values(["_m", "_s", "_p"], kind="stable")
    body = table(frame, [("model", "model"), ("Freebase", "setting"), ("--sparse-embeddings", "sparse")], [
        ("test macro-F1", lambda r: mean_std(r["test_macro_f1"], 2, 100)),
        ("balanced acc.", lambda r: mean_std(r["test_balanced_accuracy"], 2, 100)),
        ("s/epoch", lambda r: mean_std(r["seconds_per_epoch"], 3)),
        ("best epoch", lambda r: f"{r['best_epoch'].mean():.0f}"),
        ("n", lambda r: str(len(r))),
    ])
    seeds = sorted(frame["seed"].unique().tolist())
    loads = frame["loadavg"].map(lambda v: v[0])
    note = (f"\n\n_Measured with `python scripts/bench_sparse.py`: mini-batch 128 seeds, fanout 10,10, lr 0.002, "
            f"200 epochs, patience 50, remedy none, architecture from `configs/hgb/freebase-<model>.yaml`; seeds "
            f"{seeds}, mean ± sample std over seeds; {len(frame)} runs on {os.cpu_count()} CPU cores "
            f"({platform.machine()}), torch {torch.__version__}, one torch thread, one run at a time; 1-minute "
            f"load average {loads.min():.1f}-{loads.max():.1f} (the machine was shared: seconds per epoch are "
            f"inflated alike on both sides)._")
    return body + note


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated, from: " + ", ".join(SETTINGS))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--store", default=str(STORE))
    parser.add_argument("--doc", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    os.environ.setdefault("HGIMB_DATA", str(ROOT.parent / "shared" / "datasets"))
    import torch

    torch.set_num_threads(1)
    store = Path(args.store)
    seeds = parse_seeds(args.seeds)
    models = [m for m in args.models.split(",") if m]
    settings = [s for s in args.settings.split(",") if s]
    rows = load_store(store)
    done = {(r["model"], r["setting"], r["sparse"], r["seed"]) for r in rows}
    if not args.report_only:
        store.parent.mkdir(parents=True, exist_ok=True)
        for seed in seeds:  # seed-major: an interrupted grid still has every cell at fewer seeds
            for model in models:
                for setting in settings:
                    for mode in MODES:
                        if (model, setting, mode, seed) in done:
                            continue
                        row = run_one(model, setting, mode, seed)
                        with store.open("a") as fh:
                            fh.write(json.dumps(row) + "\n")
                        rows.append(row)
                        print(f"{model} | {setting} | sparse {mode} | seed {seed}: macro-F1 "
                              f"{100 * row['test_macro_f1']:.2f}, {row['seconds_per_epoch']:.3f} s/epoch, best epoch "
                              f"{row['best_epoch']}, load {row['loadavg'][0]:.2f}", flush=True)
    if not rows:
        print("no stored runs; run without --report-only first", file=sys.stderr)
        return 1
    text = render(rows)
    if args.doc:
        replace_section(Path(args.doc), SECTION, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
