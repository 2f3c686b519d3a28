"""``python -m hgimb.bench``: run a grid of (dataset, model, remedy, seed, imbalance ratio) and
turn the results into a leaderboard.

    python -m hgimb.bench run --datasets freebase,acm --models rgcn,gat \\
        --remedies none,weighted,focal,balanced-softmax --seeds 0-4 --imbalance-ratio 1,10,100 \\
        --out bench/x [--workers N] [--epochs 100 ...any train flag, fixed for every run]
    python -m hgimb.bench run --grid configs/bench/smoke.yaml [--out bench/smoke]
    python -m hgimb.bench --datasets ...            (no subcommand: run)
    python -m hgimb.bench run --grid ... --backend ray [--address auto|ray://host:port]   (docs/cluster.md)
    python -m hgimb.bench report bench/x [--metric macro_f1] [--split test]

The library is :mod:`hgimb.benchkit` (grid, runner, store, report).
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .cli import KEY_VALUE_FLAGS, ArgumentParser, add_run_config_flags, guard, parse_key_values
from .config import RunConfig
from .errors import HgimbError

COMMANDS = ("run", "report")
EXAMPLES = """examples:
  python -m hgimb.bench run --datasets freebase,acm --models rgcn,gat --remedies none,weighted,focal \\
      --seeds 0-4 --imbalance-ratio 1,10,100 --epochs 200 --out bench/x --workers 4
  python -m hgimb.bench run --grid configs/bench/smoke.yaml
  python -m hgimb.bench run --grid configs/bench/smoke.yaml --backend ray --address auto   (docs/cluster.md)
  python -m hgimb.bench --datasets synthetic --out bench/s     (no subcommand: run)
  python -m hgimb.bench report bench/x --metric macro_f1 --split test

Rerunning a command skips the runs already in <out>/results.jsonl (--retry-failed reruns errors).
Exit status: 0 every run ok; 1 some runs recorded as errors; 2 bad input; 130 interrupted."""
AXIS_FLAGS = {  # RunConfig field -> flags (plural first; the singular train flag works too)
    "dataset": ("--datasets", "--dataset"),
    "model": ("--models", "--model"),
    "remedy": ("--remedies", "--remedy"),
    "seed": ("--seeds", "--seed"),
    "imbalance_ratio": ("--imbalance-ratio", "--imbalance-ratios"),
}
AXIS_HELP = {
    "dataset": "comma-separated dataset names (or prefix:path)",
    "model": "comma-separated model names",
    "remedy": "comma-separated remedies; a remedy may combine parts with + (focal+balanced-sampler)",
    "seed": "seeds: 0-4, 0,1,2 or 0-2,7",
    "imbalance_ratio": "comma-separated training imbalance ratios (>= 1), e.g. 1,10,100",
}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m hgimb.bench", formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Benchmark grids: many training runs in parallel into a resumable "
                                        "results store, then a leaderboard.",
                            epilog=EXAMPLES)
    commands = parser.add_subparsers(dest="command", metavar="{run,report}")
    run = commands.add_parser("run", help="run a grid (skips runs already recorded)",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Run every combination of the axes as an ordinary training run.",
                              epilog="Any train flag (--epochs, --lr, --dataset-option k=v, ...) is a fixed "
                                     "value for every run; flags win over the grid file, its dataset_overrides "
                                     "and model_overrides included.\n\n" + _listing())
    run.add_argument("--grid", help="grid YAML (configs/bench/*.yaml): lists per axis, fixed keys, dataset_overrides, "
                                          "model_overrides")
    for name, flags in AXIS_FLAGS.items():
        run.add_argument(*flags, dest=f"axis_{name}", action="append", metavar="LIST", default=None,
                         help=AXIS_HELP[name])
    run.add_argument("--out", help="bench directory: results.jsonl, logs/, runs/, leaderboard.* "
                                   "(default: the grid's 'out', else bench/<grid name>)")
    run.add_argument("--workers", type=int, default=None,
                     help="parallel runs (default: one per core; 1 runs in this process); with --backend ray, "
                          "the most runs submitted at once (default: all, Ray runs as many as the cluster's CPUs allow)")
    run.add_argument("--backend", choices=("local", "ray"), default="local",
                     help="local worker processes, or one Ray task per run (pip install 'hgimb[ray]'; "
                          "docs/cluster.md)")
    run.add_argument("--address", default=None,
                     help="with --backend ray: 'auto' (the cluster of 'ray start --head' on this machine) or "
                          "ray://host:port (Ray client); default: start a local Ray instance")
    run.add_argument("--retry-failed", action="store_true", help="rerun runs recorded with an error")
    run.add_argument("--save-runs", action="store_true", help="also write each run directory under <out>/runs/<name>")
    run.add_argument("--dry-run", action="store_true", help="list the runs and their state; run nothing")
    run.add_argument("--quiet", action="store_true", help="no progress bar or per-run lines")
    add_run_config_flags(run, skip=tuple(AXIS_FLAGS) + ("out", "quiet"))

    report = commands.add_parser("report", help="leaderboard.md/.csv/.png from a bench directory")
    report.add_argument("out", help="bench directory (or its results.jsonl)")
    report.add_argument("--metric", default="macro_f1", help="ranking and paired-comparison metric (default macro_f1)")
    report.add_argument("--split", default="test", choices=("val", "test"), help="split to report (default test)")
    report.add_argument("--baseline", default="none", help="remedy the others are compared with (default none)")
    return parser


def _listing() -> str:
    try:
        from .train import registry_listing

        return registry_listing()
    except Exception:  # the help must not fail because a module is broken
        return ""


def grid_from_args(args: argparse.Namespace):
    """The command line as a Grid (axes from the axis flags, fixed keys from train flags),
    on top of ``--grid`` when given."""
    from .benchkit.grid import Grid, grid_from_mapping, load_grid, parse_axis

    axes = {}
    for name in AXIS_FLAGS:
        values = getattr(args, f"axis_{name}")
        if values:
            axes[name] = parse_axis(name, ",".join(values), AXIS_FLAGS[name][0])
    fixed = {k: v for k, v in vars(args).items() if k in RunConfig.field_names()}
    for name, flag in KEY_VALUE_FLAGS.items():
        if name in fixed:
            fixed[name] = parse_key_values(fixed[name], flag)
    command_line = grid_from_mapping(fixed, "command line")
    command_line.axes.update(axes)
    command_line.out = args.out
    if args.grid:
        return load_grid(args.grid).merged(command_line)
    if not args.out:
        raise HgimbError("--out is required without --grid (the bench directory for results.jsonl and logs)")
    if "dataset" not in axes:
        raise HgimbError("nothing to run: give --grid FILE or --datasets a,b (see python -m hgimb.bench run --help)")
    return Grid(axes=axes, fixed=command_line.fixed, out=args.out, source="command line")


def cmd_run(args: argparse.Namespace) -> int:
    from .benchkit.grid import expand

    if args.address is not None and args.backend != "ray":
        raise HgimbError(f"--address {args.address} applies to --backend ray only")
    grid = grid_from_args(args)
    configs = expand(grid)  # validates every name and value before anything starts
    from .benchkit.store import check_bench_dir

    check_bench_dir(grid.out)
    if args.workers is not None and args.workers < 1:
        raise HgimbError(f"--workers must be >= 1, got {args.workers}")
    if args.dry_run:
        from .benchkit.runner import plan

        planned = plan(configs, grid.out, retry_failed=args.retry_failed)
        for item in planned:
            print(f"{item.state:<6} {item.run_id}  {item.name}")
        counts = {s: sum(p.state == s for p in planned) for s in ("todo", "done", "failed")}
        print(f"{len(planned)} runs: {counts['todo']} to run, {counts['done']} done, {counts['failed']} failed "
              f"(rerun with --retry-failed); store: {grid.out}/results.jsonl")
        return 0
    from .benchkit.runner import run_grid

    outcome = run_grid(configs, grid.out, workers=args.workers, retry_failed=args.retry_failed,
                       save_runs=args.save_runs, quiet=args.quiet, backend=args.backend, address=args.address)
    skipped = outcome.skipped_done + outcome.skipped_failed
    print(f"{outcome.total} runs: {outcome.ran} ran ({outcome.ok} ok, {outcome.failed} failed), {skipped} skipped "
          f"({outcome.skipped_done} done, {outcome.skipped_failed} failed earlier"
          + (", --retry-failed reruns them" if outcome.skipped_failed else "") + f"); store: {outcome.out}/results.jsonl")
    for row in outcome.errors[:10]:
        print(f"  error {row['name']}: {row['error_type']}: {row['error']} (log: {outcome.out}/{row['log']})")
    if len(outcome.errors) > 10:
        print(f"  ... and {len(outcome.errors) - 10} more errors in {outcome.out}/results.jsonl")
    if outcome.interrupted:
        print(f"interrupted: rerun the same command to resume ({outcome.out}/results.jsonl is complete)",
              file=sys.stderr)
    elif outcome.ok or outcome.skipped_done:
        print(f"leaderboard: python -m hgimb.bench report {outcome.out}")
    return outcome.exit_code


def cmd_report(args: argparse.Namespace) -> int:
    from .benchkit.report import write_report

    result = write_report(args.out, metric=args.metric, split=args.split, baseline=args.baseline)
    print(result["markdown"])
    written = [result["md"], result["csv"]] + ([result["png"]] if result["png"] else [])
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


@guard
def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "run")  # the short form: python -m hgimb.bench --datasets ...
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    return cmd_run(args) if args.command == "run" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
