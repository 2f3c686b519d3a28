"""``python -m hgimb.train``: train and evaluate one model with one (composed) remedy."""
from __future__ import annotations

import sys
from typing import List, Optional

from .cli import ArgumentParser, add_run_config_flags, config_from_args, guard


def registry_listing() -> str:
    from .data import dataset_names
    from .imbalance import REMEDIES
    from .models import MODELS
    from .models.registry import model_kinds

    lines = ["datasets: " + ", ".join(dataset_names()),
             "models: " + ", ".join(f"{m} ({'/'.join(model_kinds(m))})" for m in MODELS.names()),
             "remedies (combine with +):"]
    for name in REMEDIES.names():
        cls = REMEDIES.get(name)
        params = ", ".join(f"{k}={v}" for k, v in cls.params.items())
        lines.append(f"  {name:<22} {REMEDIES.describe(name)}" + (f" [{params}]" if params else ""))
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    import argparse

    parser = ArgumentParser(prog="python -m hgimb.train",
                            description="Train a GNN on an imbalanced graph dataset and report honest metrics. "
                                        "Data-parallel over N processes: torchrun --nproc_per_node N -m hgimb.train "
                                        "... (docs/cluster.md).",
                            epilog=registry_listing(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of RunConfig keys (configs/*.yaml); flags override it")
    add_run_config_flags(parser)
    from .advise import add_search_flags  # --remedy auto: the hgimb.advise search's flags

    add_search_flags(parser.add_argument_group("--remedy auto (choose on validation with hgimb.advise)"))
    return parser


@guard
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    from .advise import resolve_auto

    cfg = resolve_auto(cfg, args)  # --remedy auto: search on validation first; else unchanged
    from .engine import run_experiment
    from .engine.distributed import is_main_process
    from .metrics import format_report

    result = run_experiment(cfg)
    if not is_main_process():  # torchrun: rank 0 reports (and wrote the run directory)
        return 0
    metrics = result.metrics
    if cfg.folds and cfg.folds > 1:
        print(f"{cfg.dataset} / {cfg.model} / {metrics['remedy']}: {cfg.folds}-fold test mean ± std")
        for key, stat in metrics["test"].items():
            print(f"  {key:<20} {stat['mean']:.4f} ± {stat['std']:.4f}")
    else:
        processes = f" on {metrics['world_size']} processes" if metrics.get("world_size", 1) > 1 else ""
        print(f"{cfg.dataset} / {cfg.model} / {metrics['remedy']} / seed {cfg.seed}: best epoch {metrics['best_epoch']} "
              f"of {metrics['epochs_run']}, {metrics['seconds_per_epoch']:.3f} s/epoch{processes}")
        if metrics.get("posthoc"):
            print(f"post-hoc (fitted on validation): {metrics['posthoc']}")
        print(format_report(metrics["test"], title="test:"))
    print(f"run directory: {result.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
