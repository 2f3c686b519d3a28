"""Reproduce the HGB node-classification baselines (Lv et al., KDD 2021) on the official split.

    python scripts/reproduce_hgb.py                      # ACM + Freebase, 7 models, seeds 0-4
    python scripts/reproduce_hgb.py --datasets acm --models rgcn,simple-hgn --seeds 0-1
    python scripts/reproduce_hgb.py --report-only        # rewrite the table from the store
    python scripts/reproduce_hgb.py --heco               # + Freebase with HeCo's 20/40/60 labels per class

Each (dataset, model) pair trains with ``configs/hgb/<dataset>-<model>.yaml`` (the HGB paper's or
repository's settings where published); every run goes through the resumable bench runner
(store ``bench/hgb``), so an interrupted reproduction continues where it stopped. The table
(test macro-F1 / micro-F1, mean ± sample std over seeds, seconds per epoch) goes into
BENCHMARKS.md between ``<!-- table:hgb -->`` markers, beside the published ACM numbers
(HGB Table 3 as reproduced in LMSPS, NeurIPS 2024, Table 1; docs/references.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from hgimb.benchkit import load_results, parse_seeds, run_grid
from hgimb.benchkit.docs import current_runs, machine, mean_std, replace_section
from hgimb.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]

DATASETS = ("acm", "freebase")
MODELS = ("rgcn", "gat", "simple-hgn", "hgt", "han", "mlp", "metapath2vec")
STORE = ROOT / "bench" / "hgb"
# HGB (Lv et al., KDD 2021) Table 3, ACM, macro-F1 / micro-F1 (mean ± std of 5 seeds), as
# reproduced in LMSPS (NeurIPS 2024) Table 1 — see docs/references.md. HGB has no MLP row.
PUBLISHED_ACM = {
    "rgcn": ((91.55, 0.74), (91.41, 0.75)),
    "han": ((90.89, 0.43), (90.79, 0.43)),
    "gat": ((92.26, 0.94), (92.19, 0.93)),
    "hgt": ((91.12, 0.76), (91.00, 0.76)),
    "simple-hgn": ((93.42, 0.44), (93.35, 0.45)),
}
# HeCo (Wang et al., KDD 2021) on this Freebase movie graph, a rerun of the authors' code
# (self-supervised pre-training, then logistic regression), labels per class -> macro-F1,
# micro-F1, AUC (docs/references.md).
HECO = {20: (54.93, 57.39, 74.65), 40: (60.04, 62.77, 77.09), 60: (56.71, 59.82, 74.18)}
HECO_MODELS = ("rgcn", "gat")


def config_path(dataset: str, model: str) -> Path:
    return ROOT / "configs" / "hgb" / f"{dataset}-{model}.yaml"


def configs_for(datasets, models, seeds):
    configs = []
    for dataset in datasets:
        for model in models:
            base = RunConfig.from_yaml(config_path(dataset, model))
            configs += [base.replace(seed=seed) for seed in seeds]
    return configs


def heco_configs(seeds):
    """Freebase with HeCo's label budget: ``n`` training labels per class, the remaining labelled
    movies split 1:1 into validation and test (HeCo: fixed 1,000 / 1,000)."""
    configs = []
    for model in HECO_MODELS:
        base = RunConfig.from_yaml(config_path("freebase", model))
        for n in HECO:
            configs += [base.replace(split="per-class", per_class=n, train_fraction=0.8, test_fraction=0.1, seed=seed)
                        for seed in seeds]
    return configs


def render_heco(frame: pd.DataFrame) -> str:
    header = ["model", "labels per class", "macro-F1", "micro-F1", "ROC-AUC (macro)", "HeCo macro / micro / AUC", "n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in HECO_MODELS:
        for n, (mac, mic, auc) in HECO.items():
            r = frame[(frame["model"] == model) & (frame["per_class"] == n)]
            if r.empty:
                continue
            lines.append("| " + " | ".join([model, str(n), mean_std(r["test_macro_f1"], 2, 100),
                                             mean_std(r["test_micro_f1"], 2, 100),
                                             mean_std(r["test_roc_auc_macro"], 2, 100),
                                             f"{mac:.2f} / {mic:.2f} / {auc:.2f}", str(len(r))]) + " |")
    return "\n".join(lines)


def published(model: str):
    if model not in PUBLISHED_ACM:
        return "-", "-", None
    (mac, mac_sd), (mic, mic_sd) = PUBLISHED_ACM[model]
    return f"{mac:.2f} ± {mac_sd:.2f}", f"{mic:.2f} ± {mic_sd:.2f}", mac


def render(frame: pd.DataFrame) -> str:
    lines = []
    for dataset in [d for d in DATASETS if d in set(frame["dataset"])]:
        rows = frame[frame["dataset"] == dataset]
        acm = dataset == "acm"
        header = ["model", "macro-F1", "micro-F1"]
        if acm:
            header += ["HGB macro-F1", "HGB micro-F1", "Δ macro-F1"]
        header += ["s/epoch", "epochs run", "n"]
        lines += [f"**{dataset}** (official HGB split; train class counts "
                  f"{rows['train_class_counts'].iloc[0]})\n",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for model in [m for m in MODELS if m in set(rows["model"])]:
            r = rows[rows["model"] == model]
            cells = [model, mean_std(r["test_macro_f1"], 2, 100), mean_std(r["test_micro_f1"], 2, 100)]
            if acm:
                pub_mac, pub_mic, pub_value = published(model)
                delta = "-" if pub_value is None else f"{r['test_macro_f1'].mean() * 100 - pub_value:+.2f}"
                cells += [pub_mac, pub_mic, delta]
            cells += [mean_std(r["seconds_per_epoch"], 3), f"{r['epochs_run'].mean():.0f}", str(len(r))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    parser.add_argument("--heco", action="store_true", help="also run Freebase with HeCo's 20/40/60 labels per class")
    parser.add_argument("--store", default=str(STORE), help="results store directory (default bench/hgb); a second "
                        "store lets two processes run at once (one writer per store); append its results.jsonl "
                        "to bench/hgb/results.jsonl afterwards")
    args = parser.parse_args()
    datasets = [d for d in args.datasets.split(",") if d]
    models = [m for m in args.models.split(",") if m]
    unknown = [f"{d}-{m}" for d in datasets for m in models if not config_path(d, m).is_file()]
    if unknown:
        print(f"error: no configs/hgb/<dataset>-<model>.yaml for {', '.join(unknown)}", file=sys.stderr)
        return 2
    seeds = parse_seeds(args.seeds)
    if not args.report_only:
        configs = configs_for(datasets, models, seeds) + (heco_configs(seeds) if args.heco else [])
        run_grid(configs, Path(args.store), workers=args.workers, quiet=True)
    frame = load_results(Path(args.store))
    stored_seeds = sorted(set(frame.loc[frame["status"] == "ok", "seed"]))
    heco = current_runs(frame, heco_configs(stored_seeds))
    # only runs of the current config files (editing a config makes new runs, old rows drop out)
    frame = current_runs(frame, configs_for(DATASETS, MODELS, stored_seeds))
    text = render(frame)
    seeds = sorted(frame["seed"].unique().tolist())
    text += (f"\n_Measured with `python scripts/reproduce_hgb.py` (configs `configs/hgb/*.yaml`), seeds {seeds}, "
             f"on {machine()}, one torch thread per run; mean ± sample std over seeds; {len(frame)} runs. "
             f"Seconds per epoch include one validation pass and are CPU seconds on a shared machine "
             f"(2-4 runs on the two cores at once): compare them within a column only roughly._")
    print(text)
    if not heco.empty:
        heco_text = (render_heco(heco) + f"\n\n_Measured with `python scripts/reproduce_hgb.py --heco`, seeds "
                     f"{sorted(heco['seed'].unique().tolist())}, on {machine()}; {len(heco)} runs._")
        print(heco_text)
        if not args.no_write:
            replace_section(ROOT / "BENCHMARKS.md", "hgb-heco", heco_text)
    if not args.no_write:
        replace_section(ROOT / "BENCHMARKS.md", "hgb", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
