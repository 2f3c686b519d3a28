"""The crystal leaderboard: run configs/bench/crystal-leaderboard.yaml and write its table into
BENCHMARKS.md section 2 (between the ``crystal-leaderboard`` markers).

    python scripts/crystal_leaderboard.py                     # run what is missing, write the table
    python scripts/crystal_leaderboard.py --models random-forest,hist-gb   # run only these now
    python scripts/crystal_leaderboard.py --threshold 300     # same grid at Tc > 300 K (own store)
    python scripts/crystal_leaderboard.py --report-only       # table from the store, no runs
    python scripts/crystal_leaderboard.py --grid configs/bench/crystal-roost.yaml   # another crystal grid

``--grid`` renders another crystal grid's runs as they are (no refit or ensemble rows added) in
the same columns, into the BENCHMARKS.md section named after the grid file (``crystal-roost``).

Columns (test split, mean ± sample std over seeds): PR-AUC and ROC-AUC of the positive class;
F1 and recall of the positive class at the decision threshold fitted on validation (every
remedy in the grid ends in ``threshold``); seconds of training (``fit`` for tabular models,
all epochs for GNNs); n = seeds. "fit on": every model fits on the training split and uses
validation for selection and the threshold; the tabular models (those declaring the ``refit``
option) also run with ``--model-option refit=true``: after that, fitted again on train +
validation for the test predictions, the protocol of the issue's reference forest. ENSEMBLES:
each grid ``cgcnn`` (``roost``)
run with the ``threshold`` or ``value-regression+threshold`` remedy is also run as the soft-voting
ensemble ``cgcnn+random-forest`` (``roost+random-forest``)
(``--model a+b``; the forest member refitted on train + validation, the threshold fitted on the
ensemble's validation outputs), with the same settings, features and split. Rows are sorted by PR-AUC. Only rows of the grid as it is now
count (editing the grid makes new run ids). With ``--threshold`` the table is printed, and
written into BENCHMARKS.md only for the grid's own threshold.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from hgimb.benchkit import expand, load_grid, load_results, run_grid
from hgimb.benchkit.docs import current_runs, machine, mean_std, replace_section
from hgimb.benchkit.grid import Grid
from hgimb.models.registry import model_params

ROOT = Path(__file__).resolve().parents[1]

GRID = "configs/bench/crystal-leaderboard.yaml"
SECTION = "crystal-leaderboard"
ENSEMBLES = {"cgcnn": "cgcnn+random-forest", "roost": "roost+random-forest"}  # GNN -> its vote with the refitted forest
ENSEMBLE_REMEDIES = ("threshold", "value-regression+threshold")


def with_refit(configs: list) -> list:
    """The grid's runs plus, for each tabular one, the same run with ``refit=true``, and for each
    GNN run of ENSEMBLE_REMEDIES its ensemble (ENSEMBLES; the forest member refitted)."""
    from dataclasses import replace

    return (configs + [replace(c, model_options={**c.model_options, "refit": True})
                       for c in configs if refits(c.model)]
            + [replace(c, model=ENSEMBLES[c.model], model_options={**c.model_options, "refit": True})
               for c in configs if c.model in ENSEMBLES and c.remedy in ENSEMBLE_REMEDIES])


def refits(model: str) -> bool:
    """Whether ``model`` (one name) declares the ``refit`` option, i.e. is a tabular model that
    can fit again on train + validation (the model registry says; no list kept here)."""
    return any(p.name == "refit" for p in model_params(model, "graph"))


def fit_on(model: str, options) -> str:
    refit = isinstance(options, dict) and options.get("refit")
    members = model.split("+")
    if refit and not all(refits(m) for m in members):  # the refit option reaches the members declaring it
        tabular = [m for m in members if refits(m)]
        return f"GNN train, {' + '.join(tabular)} train+val"
    return "train+val (refit)" if refit else "train"


def cell(values: pd.Series, digits: int = 3) -> str:
    """mean ± sample std; a single seed has no std, so only its value."""
    return mean_std(values, digits) if len(values) > 1 else f"{float(values.iloc[0]):.{digits}f}"


def table(frame: pd.DataFrame) -> str:
    lines = ["| model | features | remedy | fit on | PR-AUC | ROC-AUC | F1 (positive, val threshold) | "
             "recall (positive) | train s | n |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows = []
    frame = frame.assign(fit_on=[fit_on(m, o) for m, o in zip(frame["model"], frame["model_options"])]) \
        if "model_options" in frame else frame.assign(fit_on="train")
    for (model, features, remedy, fit), group in frame.groupby(["model", "features", "remedy", "fit_on"], sort=False):
        rows.append((group["test_pr_auc"].mean(), model, features, remedy, fit, group))
    for _, model, features, remedy, fit, group in sorted(rows, key=lambda r: -r[0]):
        lines.append(f"| {model} | {features} | {remedy} | {fit} | {cell(group['test_pr_auc'])} | "
                     f"{cell(group['test_roc_auc'])} | {cell(group['test_minority_f1'])} | "
                     f"{cell(group['test_minority_recall'])} | {cell(group['train_seconds'], 1)} | "
                     f"{len(group)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, default=None, help="override the grid's threshold (own store)")
    parser.add_argument("--models", default=None, help="run only these models now (comma-separated)")
    parser.add_argument("--features", default=None, help="run only these feature sets now (comma-separated)")
    parser.add_argument("--seeds", default=None, help="run only these seeds now (e.g. 0-2)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--grid", default=GRID, help="another crystal grid, rendered as it is (default: the leaderboard)")
    args = parser.parse_args()

    leaderboard = Path(args.grid) == Path(GRID)
    section = SECTION if leaderboard else Path(args.grid).stem
    grid = load_grid(ROOT / args.grid)
    own_threshold = float(grid.fixed.get("threshold"))
    out = ROOT / (grid.out or f"bench/{section}")
    if args.threshold is not None and args.threshold != own_threshold:
        grid = grid.merged(Grid(fixed={"threshold": float(args.threshold)}, source="--threshold"))
        out = out.with_name(f"{out.name}-t{args.threshold:g}")
    configs = with_refit(expand(grid)) if leaderboard else expand(grid)
    if not args.report_only:
        todo = configs
        if args.models:
            wanted = {m.strip() for m in args.models.split(",")}
            todo = [c for c in todo if c.model in wanted]
        if args.features:
            wanted_features = {f.strip() for f in args.features.split(",")}
            todo = [c for c in todo if c.features in wanted_features]
        if args.seeds:
            from hgimb.benchkit import parse_seeds

            seeds = set(parse_seeds(args.seeds))
            todo = [c for c in todo if c.seed in seeds]
        run_grid(todo, out, workers=args.workers, quiet=True)
    frame = current_runs(load_results(out), configs)
    if frame.empty:
        print("no finished runs in the store yet")
        return 1
    threshold = args.threshold if args.threshold is not None else own_threshold
    text = table(frame)
    planned = len(configs)
    if len(frame) < planned:
        text += (f"\n\n**Incomplete:** {len(frame)} of the grid's {planned} runs are in the store; the n column "
                 f"gives the seeds behind each mean (rerun the command to add the rest).")
    text += (f"\n\n_magnetic-tc, Tc > {threshold:g} K; measured with `python scripts/crystal_leaderboard.py"
             f"{'' if leaderboard else f' --grid {args.grid}'}"
             f"{'' if threshold == own_threshold else f' --threshold {threshold:g}'}` (grid `{args.grid}`), seeds "
             f"{sorted(frame['seed'].unique().tolist())}, on {machine()}; mean ± sample std over seeds; "
             f"{len(frame)} runs; one torch thread and one scikit-learn job per run, on cores shared with other "
             f"jobs (seconds overstate an idle machine)._")
    if threshold == own_threshold:
        replace_section(ROOT / "BENCHMARKS.md", section, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
