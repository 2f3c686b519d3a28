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

Runs go through the bench runner (:func:`hgimb.benchkit.docs.run_recording_load`), one at a time
in this process with one torch thread (a second thread busy-waits on a shared 2-core machine);
the store is ``bench/minibatch/results.jsonl`` (finished runs are skipped, so an interrupted
benchmark resumes), with the machine's load average after each run in
``bench/minibatch/loadavg.jsonl``. Seconds per epoch include one validation pass.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from hgimb.benchkit import load_results, parse_seeds
from hgimb.benchkit.docs import load_averages, load_range, machine, mean_std, replace_section, run_recording_load, table

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "bench" / "minibatch"
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
    """(batch size, fanout, learning rate) per training mode; full-batch has no batch size."""
    lr = BASE["lr"]
    return [(None, "10,10", lr), (batch_size, "10,10", lr), (batch_size, "-1,-1", lr),
            (batch_size, "10,10", MINIBATCH_LR)]


def configs(batch_size: int, seeds) -> list:
    """The grid, in run order: setting, remedy, training mode, seed."""
    from hgimb.config import RunConfig

    return [RunConfig(**{**BASE, "lr": lr}, remedy=remedy, seed=seed, imbalance_ratio=ratio,
                      batch_size=size, fanout=fanout)
            for ratio in SETTINGS.values() for remedy in REMEDIES for size, fanout, lr in modes(batch_size)
            for seed in seeds]


def mode_label(row) -> str:
    """The table's "training" cell of a store row."""
    if pd.isna(row["batch_size"]):
        return "full-batch"
    lr = "" if row["lr"] == BASE["lr"] else f", lr {row['lr']:g}"
    return f"mini-batch {int(row['batch_size'])}, fanout {row['fanout']}{lr}"


def render(frame: pd.DataFrame, loads: dict, fresh: int) -> str:
    run_note = f" {fresh} of the runs were made by the last invocation." if fresh else ""
    setting = {ratio: label for label, ratio in SETTINGS.items()}
    frame = frame.assign(setting=frame["imbalance_ratio"].map(setting), mode=frame.apply(mode_label, axis=1))
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
    note = (f"\n\n_Measured with `python scripts/bench_minibatch.py`: RGCN (2 layers, hidden 64, 200 epochs, "
            f"patience 50, lr 0.01 unless the row says otherwise), seeds {seeds}, mean ± sample std over seeds; {len(frame)} runs. Machine: "
            f"{machine()}, one torch thread, one run at a time. The machine was shared with "
            f"another benchmark grid: 1-minute load average {load_range(frame['run_id'], loads)} during the runs "
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
    os.environ["HGIMB_THREADS"] = "1"  # the table says "one torch thread"
    seeds = parse_seeds(args.seeds)
    load_before = os.getloadavg()
    print(f"machine: {machine()}, one thread; load average {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}; seeds {seeds}", flush=True)
    # the load average goes beside the store (loadavg.jsonl): a run's row records what it computed,
    # not the load the machine was under, and the table's note reports that load
    fresh = 0 if args.report_only else run_recording_load(configs(args.batch_size, seeds), STORE)
    frame = load_results(STORE) if (STORE / "results.jsonl").is_file() else pd.DataFrame()
    frame = frame[frame["status"] == "ok"] if not frame.empty else frame
    if frame.empty:
        print("no stored runs; run without --report-only first", file=sys.stderr)
        return 1
    load_after = os.getloadavg()
    text = render(frame, load_averages(STORE), fresh)
    replace_section(Path(args.doc), SECTION, text, heading=HEADING)
    print(text)
    print(f"load average at the end: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
