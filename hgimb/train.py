"""``python -m hgimb.train``: train and evaluate one model with one (composed) remedy."""
from __future__ import annotations

import sys
from typing import List, Optional

from .cli import ArgumentParser, add_run_config_flags, config_from_args, guard


def _pairs(spec) -> str:
    return " ".join(p.pair() for p in spec)


def registry_listing() -> str:
    """The ``--help`` epilog: datasets, models and remedies with their declared parameters
    (``name=default``; entries with the same parameters share a line)."""
    from .data.registry import DATASETS, PREFIXES
    from .imbalance import REMEDIES
    from .models import MODELS
    from .models.registry import model_kinds, model_params

    groups: dict = {}
    for name in DATASETS.names():
        groups.setdefault(DATASETS.params(name), []).append(name)
    for prefix in PREFIXES.names():
        groups.setdefault(PREFIXES.params(prefix), []).append(f"{prefix}:<path>")
    lines = ["datasets (--dataset-option NAME=VALUE):"]
    lines += [f"  {', '.join(names)}: {_pairs(spec) or '-'}" for spec, names in groups.items()]
    lines.append("models (--model-option NAME=VALUE):")
    for name in MODELS.names():
        for kind in model_kinds(name):
            lines.append(f"  {name} ({kind}): {_pairs(model_params(name, kind)) or '-'}")
    lines.append("remedies (combine with +; --remedy-param NAME=VALUE):")
    for name in REMEDIES.names():
        params = _pairs(REMEDIES.params(name))
        lines.append(f"  {name:<22} {REMEDIES.describe(name)}" + (f" [{params}]" if params else ""))
    lines.append("--describe NAME: what each parameter of a dataset, model or remedy means and accepts")
    return "\n".join(lines)


def describe_entry(name: str) -> str:
    """Every declared parameter of the dataset, model and/or remedy called ``name``: default, help, accepted values."""
    from .data.registry import DATASETS, PREFIXES
    from .errors import HgimbError, did_you_mean
    from .imbalance import REMEDIES
    from .models import MODELS
    from .models.registry import model_kinds, model_params
    from .params import describe

    found = []
    prefix = name.split(":", 1)[0]
    for registry, key in ((DATASETS, name), (PREFIXES, prefix)):
        if key in registry:
            found.append((f"dataset {name} (--dataset-option): {registry.describe(key)}", registry.params(key)))
    if name in MODELS:
        for kind in model_kinds(name):
            found.append((f"model {name}, {kind} tasks (--model-option): {MODELS.describe(name)}",
                          model_params(name, kind)))
    if name in REMEDIES:
        found.append((f"remedy {name} (--remedy-param): {REMEDIES.describe(name)}", REMEDIES.params(name)))
    if not found:
        known = DATASETS.names() + PREFIXES.names() + MODELS.names() + REMEDIES.names()
        raise HgimbError(f"--describe: '{name}' is no dataset, model or remedy{did_you_mean(name, known)}")
    return "\n".join(f"{title}\n{describe(spec, '  ') or '  no parameters'}" for title, spec in found)


def build_parser() -> ArgumentParser:
    import argparse

    parser = ArgumentParser(prog="python -m hgimb.train",
                            description="Train a GNN on an imbalanced graph dataset and report honest metrics. "
                                        "Data-parallel over N processes: torchrun --nproc_per_node N -m hgimb.train "
                                        "... (docs/cluster.md).",
                            epilog=registry_listing(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of RunConfig keys (configs/*.yaml); flags override it")
    parser.add_argument("--describe", metavar="NAME", help="print the parameters of a dataset, model or remedy and exit")
    add_run_config_flags(parser)
    from .advise import add_search_flags  # --remedy auto: the hgimb.advise search's flags

    add_search_flags(parser.add_argument_group("--remedy auto (choose on validation with hgimb.advise)"))
    return parser


@guard
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.describe:
        print(describe_entry(args.describe))
        return 0
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
        for member in metrics.get("members", []):  # --model a+b: each member on its own
            scores = "  ".join(f"{k}={member['test'][k]:.4f}" for k in ("macro_f1", "pr_auc", "roc_auc")
                               if k in member["test"])
            print(f"member {member['model']} (seed {member['seed']}), test: {scores}")
    print(f"run directory: {result.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
