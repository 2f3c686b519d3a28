"""Run a benchmark grid and write its table into README.md / BENCHMARKS.md.

    python scripts/bench_tables.py foundation   # configs/bench/foundation.yaml   -> README.md
    python scripts/bench_tables.py remedies     # configs/bench/remedies.yaml     -> BENCHMARKS.md
    python scripts/bench_tables.py crystal      # configs/bench/crystal-tc600.yaml -> BENCHMARKS.md
    python scripts/bench_tables.py crystal --report-only   # rewrite the table from the results store

Runs go through the same resumable runner as ``python -m hgimb.bench`` (finished runs are
skipped), so an interrupted benchmark continues where it stopped. Tables replace the text
between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` markers
(:func:`hgimb.benchkit.docs.replace_section`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from hgimb.benchkit import expand, load_grid, load_results, run_grid
from hgimb.benchkit.docs import current_runs, machine, mean_std, pr_auc_column, replace_section, table

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {
    "foundation": ("configs/bench/foundation.yaml", "README.md"),
    "remedies": ("configs/bench/remedies.yaml", "BENCHMARKS.md"),
    "crystal": ("configs/bench/crystal-tc600.yaml", "BENCHMARKS.md"),
}


def foundation(frame: pd.DataFrame) -> str:
    frame = frame.assign(setting=frame["imbalance_ratio"].map(
        lambda r: "official split" if r == 1 else f"imbalance ratio {r:g} (long-tail)"))
    frame = frame.sort_values(["imbalance_ratio", "model"], kind="stable")
    body = table(frame, [("Freebase", "setting"), ("model", "model"), ("remedy", "remedy")], [
        ("test macro-F1", lambda r: mean_std(r["test_macro_f1"], 2, 100)),
        ("test micro-F1", lambda r: mean_std(r["test_micro_f1"], 2, 100)),
        ("test PR-AUC (macro)", lambda r: mean_std(r["test_pr_auc_macro"], 3)),
        ("minority recall", lambda r: mean_std(r["test_minority_recall"], 3)),
        ("s/epoch", lambda r: mean_std(r["seconds_per_epoch"], 3)),
        ("n", lambda r: str(len(r))),
    ])
    return body


def remedies(frame: pd.DataFrame) -> str:
    parts = []
    for dataset, rows in frame.groupby("dataset", sort=False):
        ratio = rows["imbalance_ratio"].iloc[0]
        base = rows[rows["remedy"] == "none"].set_index("seed")["test_macro_f1"]
        def gain(r):
            paired = r.set_index("seed")["test_macro_f1"].sub(base).dropna() * 100
            return "-" if r["remedy"].iloc[0] == "none" or paired.empty else f"{paired.mean():+.2f}"
        order = rows.groupby("remedy")["test_macro_f1"].mean().sort_values(ascending=False).index
        rows = rows.set_index("remedy").loc[order].reset_index()
        parts.append(f"**{dataset}, RGCN, imbalance ratio {ratio:g}** (train class counts "
                     f"{rows['train_class_counts'].iloc[0]}), sorted by macro-F1:\n")
        parts.append(table(rows, [("remedy", "remedy")], [
            ("macro-F1", lambda r: mean_std(r["test_macro_f1"], 2, 100)),
            ("Δ vs none", gain),
            ("balanced acc.", lambda r: mean_std(r["test_balanced_accuracy"], 2, 100)),
            ("minority recall", lambda r: mean_std(r["test_minority_recall"], 3)),
            ("PR-AUC (macro)", lambda r: mean_std(r["test_pr_auc_macro"], 3)),
            ("n", lambda r: str(len(r))),
        ]))
        parts.append("")
    return "\n".join(parts)


def crystal(frame: pd.DataFrame) -> str:
    frame = frame.assign(pr=pr_auc_column(frame))
    return table(frame, [("remedy", "remedy")], [
        ("PR-AUC", lambda r: mean_std(r["pr"], 3)),
        ("ROC-AUC", lambda r: mean_std(r["test_roc_auc"], 3)),
        ("F1 (positive)", lambda r: mean_std(r["test_minority_f1"], 3)),
        ("recall (positive)", lambda r: mean_std(r["test_minority_recall"], 3)),
        ("macro-F1", lambda r: mean_std(r["test_macro_f1"], 3)),
        ("s/epoch", lambda r: mean_std(r["seconds_per_epoch"], 2)),
        ("n", lambda r: str(len(r))),
    ])


RENDER = {"foundation": foundation, "remedies": remedies, "crystal": crystal}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=sorted(SECTIONS))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--seeds", help="run only these seeds now (e.g. 0-2); the table reports every stored run")
    args = parser.parse_args()
    grid_path, doc = SECTIONS[args.section]
    grid = load_grid(ROOT / grid_path)
    out = ROOT / (grid.out or f"bench/{args.section}")
    if not args.report_only:
        configs = expand(grid)
        if args.seeds:
            from hgimb.benchkit import parse_seeds

            wanted = set(parse_seeds(args.seeds))
            configs = [c for c in configs if c.seed in wanted]
        run_grid(configs, out, workers=args.workers, quiet=True)
    # only runs of the grid as it is now: editing the grid file makes new runs
    frame = current_runs(load_results(out), expand(grid))
    text = RENDER[args.section](frame)
    seeds = sorted(frame["seed"].unique().tolist())
    planned = len(expand(grid))
    if len(frame) < planned:
        text += (f"\n\n**Incomplete:** {len(frame)} of the grid's {planned} runs are in the store; "
                 f"rerun the command to finish the rest (finished runs are skipped). The n column "
                 f"gives the seeds behind each mean.")
    text += (f"\n\n_Measured with `python scripts/bench_tables.py {args.section}` (grid `{grid_path}`), "
             f"seeds {seeds}, on {machine()}; mean ± sample std over seeds; "
             f"{len(frame)} runs. Seconds per epoch include one validation pass; these runs shared the "
             f"two cores with other jobs (one torch thread each), so they overstate the cost of an epoch "
             f"on an idle machine._")
    replace_section(ROOT / doc, args.section, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
