"""Do the model defaults work out of the box? Every model x dataset that has a tuned config file
runs once with nothing but ``--dataset`` and ``--model`` (the model's declared defaults, else the
global ones; plus the task-defining keys of the tuned config: threshold, split, imbalance, remedy)
and once with its tuned config, same seed; the default must land within 3 test macro-F1 points of
the tuned config.

    python scripts/check_defaults.py                     # every pair, seed 0; writes BENCHMARKS 'defaults'
    python scripts/check_defaults.py --models rgcn,gat --datasets acm --no-write

Tuned settings: ``configs/hgb/<dataset>-<model>.yaml`` and ``configs/<dataset>.yaml`` (for the model
it names; the DGL twins ``dgl-rgcn`` / ``dgl-gat`` use their PyG model's file, as the DGL parity
table does), then the protocol grids for models tuned only there (:data:`GRID_TUNED`: gcn / sage /
gatconv on Cora step rho = 10, the tabular models on magnetic-tc). Runs go through the bench runner (resumable store under bench/check-defaults), so an
interrupted check continues where it stopped. Exit status 1 when a pair misses the 3-point bar.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hgimb.benchkit import load_results, run_grid, run_id
from hgimb.benchkit.docs import machine, replace_section
from hgimb.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]

TOLERANCE = 3.0  # macro-F1 points
# keys that define the task rather than the model's settings: the default run shares them
TASK_KEYS = ("threshold", "split", "imbalance_ratio", "imbalance_type", "remedy")
# run order: cheap models first, so that an interrupted check has covered the most pairs
ORDER = ("logistic", "random-forest", "extra-trees", "hist-gb", "mlp", "metapath2vec", "gcn", "sage", "gatconv", "rgcn",
         "dgl-rgcn", "gat", "dgl-gat", "cgcnn", "hgt", "han", "simple-hgn")


# Pairs whose tuned settings live in a protocol grid (the BENCHMARKS table they come from): the
# grid's run with these values, at the check's seed. A pair that also has a config file keeps the file.
GRID_TUNED = (
    ("configs/lt/step10.yaml", {"remedy": "none"}),  # gcn / sage / gatconv, Cora step rho = 10 (section 3)
    ("configs/bench/crystal-leaderboard.yaml", {"remedy": "threshold", "features": "magpie"}),  # tabular (section 2)
)
# Models tuned with their twin's config file (BENCHMARKS "DGL parity": same file, model replaced).
TWINS = {"dgl-rgcn": "rgcn", "dgl-gat": "gat"}


class Tuned:
    """A pair's tuned settings: ``label`` (where they come from), ``config`` and ``task`` (the
    task-defining values the default run shares)."""

    def __init__(self, label: str, config: RunConfig, keys):
        self.label, self.config = label, config
        self.task = {k: getattr(config, k) for k in TASK_KEYS if k in keys}


def tuned_configs(datasets, models, seed: int):
    """(dataset, model) -> :class:`Tuned`, for the pairs that have tuned settings in the repo."""
    from hgimb.benchkit import expand, load_grid

    pairs = {}
    for path in sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "configs" / "hgb").glob("*.yaml")):
        values = RunConfig.read_yaml(path)
        dataset, model = values.get("dataset"), values.get("model", RunConfig.model)
        label = f"`{path.relative_to(ROOT)}`"
        config = RunConfig.from_yaml(path, overrides={"seed": seed, "quiet": True})
        for name in [model] + [twin for twin, base in TWINS.items() if base == model]:
            if dataset in datasets and name in models:
                pairs[(dataset, name)] = Tuned(label if name == model else f"{label}, model {name}",
                                               config.replace(model=name), values)
    for rel, pick in GRID_TUNED:
        keys = set(RunConfig.read_yaml(ROOT / rel)) | {"remedy"}
        for cfg in expand(load_grid(ROOT / rel)):
            chosen = all(getattr(cfg, k) == v for k, v in pick.items())
            pair = (cfg.dataset, cfg.model)
            if chosen and pair not in pairs and cfg.dataset in datasets and cfg.model in models:
                where = ", ".join(f"{k} {v}" for k, v in pick.items())
                pairs[pair] = Tuned(f"`{rel}` ({where})", cfg.replace(seed=seed, quiet=True), keys)
    return pairs


def plan(pairs, seed: int):
    rows = []

    def cost(pair):
        return (ORDER.index(pair[1]) if pair[1] in ORDER else len(ORDER), pair)

    for (dataset, model), tuned in sorted(pairs.items(), key=lambda item: cost(item[0])):
        default = RunConfig.from_dict({"dataset": dataset, "model": model, "seed": seed, "quiet": True, **tuned.task},
                                      source="defaults check")
        rows.append((dataset, model, tuned.label, default, tuned.config))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="freebase,acm,cora,magnetic-tc")
    parser.add_argument("--models", default=",".join(ORDER))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/check-defaults")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="do not write the BENCHMARKS table")
    parser.add_argument("--report-only", action="store_true", help="run nothing; table from the runs in the store")
    args = parser.parse_args()
    pairs = tuned_configs(args.datasets.split(","), args.models.split(","), args.seed)
    planned = plan(pairs, args.seed)
    configs = list({run_id(cfg): cfg for _, _, _, default, tuned in planned for cfg in (default, tuned)}.values())
    if not args.report_only and run_grid(configs, args.out, workers=args.workers).interrupted:
        return 130
    results = load_results(args.out).set_index("run_id")
    lines = ["| dataset | model | tuned config | macro-F1, defaults | macro-F1, tuned | Δ | within 3 | s/epoch (defaults) |",
             "|---|---|---|---|---|---|---|---|"]
    missed = 0
    for dataset, model, label, default, tuned in planned:
        a, b = (results.loc[run_id(c)] if run_id(c) in results.index else {"status": "not run"} for c in (default, tuned))
        if a.get("status") != "ok" or b.get("status") != "ok":
            lines.append(f"| {dataset} | {model} | {label} | {a.get('status')} | {b.get('status')} | – | – | – |")
            missed += 1
            continue
        fa, fb = 100 * float(a["test_macro_f1"]), 100 * float(b["test_macro_f1"])
        ok = fa >= fb - TOLERANCE
        missed += not ok
        lines.append(f"| {dataset} | {model} | {label} | {fa:.2f} | {fb:.2f} | {fa - fb:+.2f} | "
                     f"{'yes' if ok else '**no**'} | {float(a['seconds_per_epoch']):.3f} |")
    text = "\n".join(lines) + (
        f"\n\n_Measured with `python scripts/check_defaults.py` (seed {args.seed}, one run each), on "
        f"{machine()}, one torch thread per run. \"defaults\" = `python -m hgimb.train --dataset D --model M` "
        "and nothing else (the model's declared defaults, else the global ones)._\n")
    print(text)
    if not args.no_write:
        replace_section(ROOT / "BENCHMARKS.md", "defaults", text, heading="## Model defaults out of the box")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
