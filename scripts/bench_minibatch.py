"""Full-batch vs mini-batch (neighbour sampling) RGCN on Freebase -> BENCHMARKS.md ``minibatch``.

    python scripts/bench_minibatch.py                 # run what is missing, rewrite the table
    python scripts/bench_minibatch.py --report-only   # rewrite the table from the stored runs
    python scripts/bench_minibatch.py --seeds 0-4 --batch-size 256

Grid: Freebase (HGB), official split and its training part made long-tailed with imbalance
ratio 10; RGCN with the README settings (200 epochs, patience 50, lr 0.01, weight decay 5e-4,
hidden 64, 2 layers, dropout 0.5, model selection on validation macro-F1); remedies none and
weighted; training full-batch, or mini-batch (``--batch-size``, default 128 seeds) with fanout
10,10 and with full neighbourhoods (-1,-1). Evaluation of mini-batch runs uses full
neighbourhoods (exact), so the columns differ only in how training steps see the graph.

Runs happen in this process, one at a time, with one torch thread (a second thread busy-waits on
a shared 2-core machine); each finished run is appended to ``runs/bench-minibatch/results.jsonl``
and skipped next time, so an interrupted benchmark resumes. Seconds per epoch include one
validation pass.
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

STORE = ROOT / "runs" / "bench-minibatch" / "results.jsonl"
SECTION = "minibatch"
SETTINGS = {"official split": 1.0, "imbalance ratio 10": 10.0}
REMEDIES = ("none", "weighted")
BASE = dict(dataset="freebase", model="rgcn", epochs=200, patience=50, lr=0.01, weight_decay=5e-4, hidden=64,
            layers=2, dropout=0.5, monitor="macro_f1", quiet=True, plots=False)


# Mini-batch training takes ~batch-count optimiser steps per epoch against full-batch's one; at
# the full-batch learning rate (0.01) the learnable per-node embeddings overfit within a few
# epochs (best epochs 1-12), so one mode also runs at lr 0.002.
MINIBATCH_LR = 0.002


def modes(batch_size: int):
    """(label, batch size, fanout, learning rate) per training mode."""
    lr = BASE["lr"]
    return [("full-batch", None, "10,10", lr),
            (f"mini-batch {batch_size}, fanout 10,10", batch_size, "10,10", lr),
            (f"mini-batch {batch_size}, fanout -1,-1", batch_size, "-1,-1", lr),
            (f"mini-batch {batch_size}, fanout 10,10, lr {MINIBATCH_LR:g}", batch_size, "10,10", MINIBATCH_LR)]


def load_store() -> list:
    if not STORE.exists():
        return []
    return [json.loads(line) for line in STORE.read_text().splitlines() if line.strip()]


def minority_recall(metrics) -> float:
    counts = metrics["train_class_counts"]
    smallest = min(range(len(counts)), key=lambda c: counts[c])
    return float(metrics["test"]["per_class"][smallest]["recall"])


def run_one(setting: str, mode: str, batch_size, fanout: str, lr: float, remedy: str, seed: int) -> dict:
    from hgimb.config import RunConfig
    from hgimb.engine import run_experiment

    cfg = RunConfig(**{**BASE, "lr": lr}, remedy=remedy, seed=seed, imbalance_ratio=SETTINGS[setting],
                    batch_size=batch_size, fanout=fanout)
    start = time.perf_counter()
    metrics = run_experiment(cfg, write=False).metrics
    return {"setting": setting, "mode": mode, "remedy": remedy, "seed": seed, "batch_size": batch_size,
            "fanout": fanout if batch_size else None, "test_macro_f1": metrics["test"]["macro_f1"],
            "test_balanced_accuracy": metrics["test"]["balanced_accuracy"],
            "test_minority_recall": minority_recall(metrics), "seconds_per_epoch": metrics["seconds_per_epoch"],
            "epochs_run": metrics["epochs_run"], "best_epoch": metrics["best_epoch"],
            "wall_seconds": time.perf_counter() - start, "train_class_counts": metrics["train_class_counts"],
            "loadavg": list(os.getloadavg())}


def render(rows: list, fresh: int) -> str:
    import torch

    run_note = f" {fresh} of the runs were made by the last invocation." if fresh else ""

    frame = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(frame["mode"].drop_duplicates())}
    frame = frame.assign(_s=frame["setting"].map(list(SETTINGS).index), _r=frame["remedy"].map(REMEDIES.index),
                         _m=frame["mode"].map(order)).sort_values(["_s", "_r", "_m"], kind="stable")
    body = table(frame, [("Freebase", "setting"), ("remedy", "remedy"), ("training", "mode")], [
        ("test macro-F1", lambda r: mean_std(r["test_macro_f1"], 2, 100)),
        ("balanced acc.", lambda r: mean_std(r["test_balanced_accuracy"], 2, 100)),
        ("minority recall", lambda r: mean_std(r["test_minority_recall"], 3)),
        ("s/epoch", lambda r: mean_std(r["seconds_per_epoch"], 3)),
        ("best epoch", lambda r: f"{r['best_epoch'].mean():.0f}"),
        ("epochs run", lambda r: f"{r['epochs_run'].mean():.0f}"),
        ("n", lambda r: str(len(r))),
    ])
    seeds = sorted(frame["seed"].unique().tolist())
    loads = frame["loadavg"].map(lambda v: v[0])
    note = (f"\n\n_Measured with `python scripts/bench_minibatch.py`: RGCN (2 layers, hidden 64, 200 epochs, "
            f"patience 50, lr 0.01 unless the row says otherwise), seeds {seeds}, mean ± sample std over seeds; {len(frame)} runs. Machine: "
            f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, Python "
            f"{platform.python_version()}, one torch thread, one run at a time. The machine was shared with "
            f"another benchmark grid: 1-minute load average {loads.min():.1f}-{loads.max():.1f} during the runs "
            f"(2 cores), so seconds per epoch are inflated, but all rows ran under the same conditions. "
            f"Seconds per epoch include one validation pass (mini-batch runs evaluate with full "
            f"neighbourhoods, exact).{run_note}_")
    return body + note


HEADING = """## Mini-batch training (neighbour sampling), RGCN on Freebase

Protocol as in the README's Freebase table (official HGB split, 20% of the training labels held
out for validation; "imbalance ratio 10" makes the training part long-tailed). Mini-batch rows
train on seed batches with sampled neighbourhoods (`--batch-size`, `--fanout`; see
`hgimb/engine/sampling.py`) and evaluate with full neighbourhoods.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--doc", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    os.environ.setdefault("HGIMB_DATA", str(ROOT.parent / "shared" / "datasets"))
    import torch

    torch.set_num_threads(1)
    seeds = parse_seeds(args.seeds)
    rows = load_store()
    done = {(r["setting"], r["mode"], r["remedy"], r["seed"]) for r in rows}
    load_before = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, one thread; "
          f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; seeds {seeds}", flush=True)
    ran = []
    if not args.report_only:
        STORE.parent.mkdir(parents=True, exist_ok=True)
        for setting in SETTINGS:
            for remedy in REMEDIES:
                for mode, batch_size, fanout, lr in modes(args.batch_size):
                    for seed in seeds:
                        if (setting, mode, remedy, seed) in done:
                            continue
                        row = run_one(setting, mode, batch_size, fanout, lr, remedy, seed)
                        with STORE.open("a") as fh:
                            fh.write(json.dumps(row) + "\n")
                        rows.append(row)
                        ran.append(seed)
                        print(f"{setting} | {remedy} | {mode} | seed {seed}: macro-F1 {100 * row['test_macro_f1']:.2f}, "
                              f"{row['seconds_per_epoch']:.3f} s/epoch, {row['epochs_run']} epochs, "
                              f"load {row['loadavg'][0]:.2f}", flush=True)
    if not rows:
        print("no stored runs; run without --report-only first", file=sys.stderr)
        return 1
    load_after = os.getloadavg()
    text = render(rows, len(ran))
    replace_section(Path(args.doc), SECTION, text, heading=HEADING)
    print(text)
    print(f"load average at the end: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
