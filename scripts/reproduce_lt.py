"""Class-imbalanced node classification on Cora with the GraphENS / TAM protocol, next to the
published GCN numbers (BENCHMARKS.md section ``lt``).

    python scripts/reproduce_lt.py                    # run what is missing, rewrite the table
    python scripts/reproduce_lt.py --report-only      # rewrite the table from the results store
    python scripts/reproduce_lt.py --settings step10 --models gcn --seeds 0-4

Settings:

* ``step10`` -- ``configs/bench/lt-cora.yaml`` as written: the Planetoid public split, step
  imbalance rho = 10 (the C // 2 = 3 last classes keep 2 of their 20 training nodes), backbones
  gcn/gat/sage, remedies none (cross-entropy), weighted (re-weight), smote (GraphSMOTE-like),
  balanced-softmax, tam (BS + TAM) and graphens. This is the protocol of GraphENS (ICLR 2022) and
  TAM (ICML 2022); the published GCN numbers come from Table 2 of Yan et al., "Geometric Imbalance
  in Semi-Supervised Node Classification", as tabulated in the project's ANCHORS.md.
* ``lt100`` -- the same grid with ``LT_SETTING`` on top: a long-tailed training set, rho = 100,
  drawn from a stratified split the size of Planetoid's ``full`` split (about 1,208 training /
  500 validation / 1,000 test nodes). GraphSHA's protocol differs: it keeps the ``full`` split's
  fixed validation/test nodes and *removes* the lowest-degree nodes of each class (with their
  edges) from the graph, while hgimb only unlabels training nodes (uniformly at random) and keeps
  the graph whole -- its numbers are not directly comparable.

Runs go through the resumable bench runner (``hgimb.benchkit.run_grid``; finished runs are
skipped). By default one worker process with one torch thread (``HGIMB_THREADS=1``), leaving a
core of a 2-core machine free; on a shared 2-core machine two torch threads per run slowed Cora
epochs by more than 10x.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Dict, List

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hgimb.benchkit import expand, load_grid, load_results, run_grid  # noqa: E402
from hgimb.benchkit.grid import Grid, parse_axis, parse_seeds, run_id  # noqa: E402
from hgimb.errors import HgimbError  # noqa: E402

GRID = "configs/bench/lt-cora.yaml"
DOC = "BENCHMARKS.md"
SECTION = "lt"
# Planetoid 'full' split of Cora: 2,708 nodes, 500 validation, 1,000 test, the rest (1,208) training
LT_SETTING = {"split": "stratified", "train_fraction": round(1208 / 2708, 4), "test_fraction": round(1000 / 2708, 4),
              "imbalance_ratio": 100.0, "imbalance_type": "long-tail"}
SETTINGS = ("step10", "lt100")
DEFAULT_MODELS = {"step10": None, "lt100": ["gcn"]}  # None: the grid's models
TITLES = {"step10": "Step imbalance, ρ = 10, Planetoid public split",
          "lt100": "Long-tailed, ρ = 100, stratified split of the size of Planetoid's full split"}
# Yan et al., "Geometric Imbalance in Semi-Supervised Node Classification", Table 2: GCN on Cora,
# step rho = 10, balanced accuracy / macro-F1 (%), as tabulated in /work/shared/ANCHORS.md.
PUBLISHED = {"none": ("Cross-entropy", 62.82, 61.67), "weighted": ("Re-weight", 65.36, 64.97),
             "smote": ("GraphSMOTE", 66.39, 65.49), "balanced-softmax": ("Balanced Softmax", 69.98, 68.68),
             "tam": ("BS + TAM", 69.94, 69.54), "graphens": ("GraphENS", 70.89, 70.90)}
DATASETS = {"cora": ("planetoid", "ind.cora.x"), "citeseer": ("planetoid", "ind.citeseer.x")}


def setting_grid(grid: Grid, setting: str, models: List[str] | None, seeds: List[int] | None) -> Grid:
    """The grid of one setting: the file's grid with the setting's keys and the requested axes."""
    fixed = dict(grid.fixed)
    axes = dict(grid.axes)
    if setting == "lt100":
        for key, value in LT_SETTING.items():
            axes.pop(key, None)
            fixed[key] = value
    if models:
        axes["model"] = models
    if seeds:
        axes["seed"] = seeds
    return Grid(axes, fixed, dict(grid.dataset_overrides), grid.out, source=f"{grid.source} [{setting}]")


def available_datasets(grid: Grid, data_root: Path) -> Dict[str, str]:
    """Dataset name -> '' when its files exist under the data root, else a note why it is skipped."""
    out = {}
    for name in grid.axes.get("dataset", []):
        parts = DATASETS.get(name)
        out[name] = "" if parts is None or (data_root / parts[0] / parts[1]).is_file() else (
            f"{name}: {data_root / parts[0]}/ind.{name}.* not found under the data root, skipped")
    return out


def mean_std(values: pd.Series, scale: float = 100.0, digits: int = 1) -> str:
    values = values.dropna().astype(float) * scale
    if values.empty:
        return "-"
    if len(values) == 1:
        return f"{values.mean():.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def render_setting(frame: pd.DataFrame, setting: str, remedies: List[str], seeds: int) -> str:
    """One markdown table: a row per remedy; per backbone 'balanced acc. / macro-F1' (mean ± std)."""
    order = {"gcn": 0, "gat": 1, "sage": 2}
    models = sorted(dict.fromkeys(frame["model"]), key=lambda m: order.get(m, 9))
    header = ["remedy"] + [f"{m.upper()}" for m in models]
    published = setting == "step10"
    if published:
        header += ["published GCN (Yan et al. Table 2)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for remedy in remedies:
        rows = frame[frame["remedy"] == remedy]
        if rows.empty:
            continue
        label = {"tam": "tam (BS + TAM)", "none": "none (CE)", "weighted": "weighted (re-weight)",
                 "smote": "smote (GraphSMOTE-like)", "graphens": "graphens (GraphENS-like)"}.get(remedy, remedy)
        cells = [label]
        for model in models:
            part = rows[rows["model"] == model]
            n = f" (n={len(part)})" if len(part) != seeds else ""
            cells.append(f"{mean_std(part['test_balanced_accuracy'])} / {mean_std(part['test_macro_f1'])}{n}"
                         if len(part) else "-")
        if published:
            name, bacc, f1 = PUBLISHED.get(remedy, ("", None, None))
            gcn = rows[rows["model"] == "gcn"]
            delta = ("" if gcn.empty or bacc is None else
                     f"; GCN here {100 * gcn['test_balanced_accuracy'].mean() - bacc:+.1f} / "
                     f"{100 * gcn['test_macro_f1'].mean() - f1:+.1f}")
            cells.append(f"{bacc:.2f} / {f1:.2f} ({name}{delta})" if bacc is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    counts = frame["train_class_counts"].iloc[0] if "train_class_counts" in frame else None
    speed = ", ".join(f"{m} {frame[frame['model'] == m]['seconds_per_epoch'].median():.2f}" for m in models)
    return (f"**{TITLES[setting]}** (training class counts {counts}). Test balanced accuracy / macro-F1 "
            f"in %, mean ± sample std over {seeds} seeds (n = runs where fewer finished):\n\n" + "\n".join(lines) +
            f"\n\nMedian seconds per epoch (training step + one validation pass, one thread, shared machine): "
            f"{speed}.")


NOTES = """Differences from the published protocol (GraphENS / TAM code, as used by Yan et al.):

* budget: at most 300 epochs, early stopping after 100 epochs without a better validation macro-F1,
  the best epoch restored; the papers train 2,000 epochs (Adam with ReduceLROnPlateau) and select
  the epoch by validation (accuracy + macro-F1) / 2. 5 seeds here, 10 repetitions in the TAM code;
  their 20-training-nodes-per-class split and step rule give the same training counts as hgimb's
  `--imbalance-type step` (classes 4-6 keep 2 nodes).
* backbones: hgimb's `gcn`/`sage` apply dropout to the input features too and put a linear head
  after two convolutions of width 64 (the TAM/GraphENS code: no input dropout, the second
  convolution outputs the classes, default width 256); `gat` is hgimb's heterogeneous GAT
  (4 heads x 16 channels, sum over relations, linear skip) on Cora's single relation. Weight decay
  applies to every parameter (the code: first layer only).
* `smote` is SMOTE in embedding space on the full-graph encoder's output (no edge generator, unlike
  GraphSMOTE); `graphens` mixes embeddings instead of building synthetic ego networks (no saliency
  mask, no KL-adaptive neighbour sampling; see `hgimb/imbalance/graph_remedies.py`); `tam` takes
  unlabelled nodes' predictions from an eval-mode forward pass per epoch (the code: the training
  pass). The published numbers were not re-checked against the paper here (no network access):
  they are ANCHORS.md's transcription."""


def render(frame: pd.DataFrame, settings: List[str], remedies: List[str], skipped: List[str],
           wall: float | None, workers: int, seeds: int) -> str:
    parts = ["## 3. Class-imbalanced node classification on Cora (GraphENS / TAM protocol)", "",
             "Planetoid Cora, 2-layer backbones (hidden 64, dropout 0.5, Adam lr 0.01, weight decay 5e-4), "
             "model selection on validation macro-F1. Published column: GCN, Table 2 of Yan et al., "
             "\"Geometric Imbalance in Semi-Supervised Node Classification\" (the GraphENS/TAM protocol; "
             "the TAM code averages 10 repetitions).", ""]
    for setting in settings:
        rows = frame[frame["setting"] == setting]
        if rows.empty:
            parts += [f"**{TITLES[setting]}**: no finished runs.", ""]
            continue
        parts += [render_setting(rows, setting, remedies, seeds), ""]
    if "lt100" in settings:
        parts += ["The ρ = 100 setting is *not* GraphSHA's: GraphSHA keeps the `full` split's fixed "
                  "validation/test nodes and removes the lowest-degree training nodes and their edges from "
                  "the graph; hgimb draws a stratified split and only unlabels training nodes (uniformly at "
                  "random), so no published numbers are set beside it.", ""]
    parts += [NOTES, ""]
    if skipped:
        parts += ["Skipped: " + "; ".join(skipped) + ".", ""]
    import torch

    seeds = sorted(frame["seed"].unique().tolist()) if not frame.empty else []
    compute = frame.groupby(["setting", "model"], sort=False)["train_seconds"].sum() / 60
    per_group = ", ".join(f"{s} {m} {v:.1f} min" for (s, m), v in compute.items())
    timing = f" The last invocation ran {wall / 60:.1f} min." if wall is not None else ""
    parts.append(f"_Written by `python scripts/reproduce_lt.py` (grid `{GRID}`; default: step10 with gcn, seeds 0-4; "
                 f"`--models gat,sage` and `--settings lt100` added the other rows), seeds {seeds}, on "
                 f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, one worker process "
                 f"with one torch thread, sharing the machine with other jobs (seconds per epoch are inflated by "
                 f"that). Training time summed over runs: {per_group}.{timing}_")
    return "\n".join(parts)


def replace_section(doc: Path, name: str, text: str) -> None:
    """Replace the text between the table markers (one implementation: scripts/bench_docs.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_docs import replace_section as _replace

    _replace(doc, name, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default="step10", help="settings to run, comma list of: " + ", ".join(SETTINGS))
    parser.add_argument("--models", default="gcn", help="backbones to run (default gcn; the grid lists gcn, gat, sage)")
    parser.add_argument("--seeds", default=None, help="e.g. 0-4 (default: the grid's)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="only rewrite the table from the results store")
    parser.add_argument("--out", default=None, help="results directory (default: the grid's out)")
    parser.add_argument("--doc", default=str(ROOT / DOC))
    args = parser.parse_args(argv)
    os.environ.setdefault("HGIMB_THREADS", "1")
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    bad = [s for s in settings if s not in SETTINGS]
    if bad:
        raise HgimbError(f"--settings: unknown setting '{bad[0]}'; valid: {', '.join(SETTINGS)}")
    grid = load_grid(ROOT / GRID)
    seeds = parse_seeds(args.seeds) if args.seeds else None
    models = parse_axis("model", args.models, "--models")
    data_root = Path(os.environ.get("HGIMB_DATA", ROOT / "datasets"))
    notes = available_datasets(grid, data_root)
    skipped = [note for note in notes.values() if note]
    present = [d for d, note in notes.items() if not note]
    if not present:
        raise HgimbError(f"none of {grid.axes.get('dataset')} found under HGIMB_DATA={data_root}; "
                         "set HGIMB_DATA to the shared datasets folder")
    grid.axes["dataset"] = present
    out = Path(args.out) if args.out else ROOT / (grid.out or "bench/lt-cora")
    wall, exit_code = None, 0
    if not args.report_only:
        start = time.perf_counter()
        for setting in settings:
            configs = expand(setting_grid(grid, setting, models, seeds))
            outcome = run_grid(configs, out, workers=args.workers, quiet=True)
            print(f"{setting}: {outcome.ok} ran ok, {outcome.failed} failed, {outcome.skipped_done} already done"
                  + (" -- interrupted; rerun the same command to continue" if outcome.interrupted else ""),
                  file=sys.stderr)
            for row in outcome.errors[:3]:
                print(f"  failed: {row.get('name', row.get('run_id'))}: {row.get('error')}", file=sys.stderr)
            exit_code = max(exit_code, outcome.exit_code)
            if outcome.interrupted:
                break
        wall = time.perf_counter() - start
    # the report covers the whole grid (every backbone, both settings): whatever the store holds
    run_ids: Dict[str, str] = {}
    for setting in SETTINGS:
        run_ids.update({run_id(c): setting for c in expand(setting_grid(grid, setting, None, seeds))})
    frame = load_results(out)
    frame = frame[(frame["status"] == "ok") & frame["run_id"].isin(run_ids)].copy()
    frame["setting"] = frame["run_id"].map(run_ids)
    shown = [s for s in SETTINGS if s in settings or (frame["setting"] == s).any()]
    text = render(frame, shown, list(grid.axes["remedy"]), skipped, wall, args.workers,
                  len(seeds or grid.axes["seed"]))
    replace_section(Path(args.doc), SECTION, text)
    print(text)
    return exit_code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HgimbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
