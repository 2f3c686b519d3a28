"""Simple-HGN's epoch against GAT's, and against the matrix products it cannot avoid.

    HGIMB_DATA=<data root> python scripts/bench_simple_hgn.py --dataset freebase --reps 3

One process, one torch thread, interleaved repetitions (after one warm-up each) of a full-batch
epoch as the trainer runs it (its full-batch path, ``hgimb.engine.batching.FullGraph``: training
step: forward, cross-entropy on the training items, backward, Adam; then an eval forward for the
validation items) for:

- ``simple-hgn`` with ``configs/hgb/<dataset>-simple-hgn.yaml`` (HGB: 8 heads x 64 per head = 512
  wide hidden layers);
- ``gat`` with ``configs/hgb/<dataset>-gat.yaml`` (8 heads x 8 channels = 64 wide);
- ``gat`` at Simple-HGN's width (8 heads x 64 channels, ``--hidden 512``);
- the dense products of a 512-wide Simple-HGN layer computed on every node, timed alone: layer 2
  multiplies N nodes' 512-wide inputs by its 512 x 512 projection and residual matrices in the
  training forward (2 products), the backward (2 weight gradients + 2 input gradients) and the
  eval forward (2): eight ``[N, 512] x [512, 512]`` products (Simple-HGN's ``encode_rows`` computes
  the layer on the nodes the training / validation items read only, fewer than N).

Reports CPU seconds (``time.process_time``) per epoch, medians, so that other processes on a shared
machine inflate the numbers less than wall time would; the ratios are the point.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="freebase")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dataset-option", action="append", default=[], help="NAME=VALUE for the loader (tests)")
    args = parser.parse_args()
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    from hgimb.config import RunConfig
    from hgimb.engine.allocator import tune_allocator
    from hgimb.engine.batching import FullGraph
    from hgimb.engine.run import load_task
    from hgimb.engine.trainer import make_optimizer, model_config
    from hgimb.models import build_model

    tune_allocator()
    config_dir = ROOT / "configs" / "hgb"
    hgn_file = config_dir / f"{args.dataset}-simple-hgn.yaml"
    base = RunConfig.from_yaml(hgn_file) if hgn_file.exists() else RunConfig(dataset=args.dataset, model="simple-hgn")
    options = dict(kv.split("=", 1) for kv in args.dataset_option)
    base = base.replace(dataset=args.dataset, dataset_options={**base.dataset_options, **options})
    task = load_task(base)
    gat_file = config_dir / f"{args.dataset}-gat.yaml"
    gat = RunConfig.from_yaml(gat_file).replace(dataset=args.dataset) if gat_file.exists() else base.replace(
        model="gat", hidden=64, heads=8, model_options={})
    variants = {
        f"simple-hgn ({base.heads} heads x {base.hidden})": base,
        f"gat ({gat.heads} heads x {gat.hidden // gat.heads})": gat,
        f"gat ({base.heads} heads x {base.hidden})": gat.replace(hidden=base.hidden * base.heads, heads=base.heads),
    }
    train, val, y = task.split["train"], task.split["val"], task.y
    batching = FullGraph(task, base, torch.device("cpu"))  # the trainer's full-batch path
    n = sum(int(task.data[t].num_nodes) for t in task.data.node_types)

    def epoch_fn(cfg):
        torch.manual_seed(0)
        model = build_model(cfg.model, task, model_config(cfg))
        optimizer = make_optimizer(cfg, model.parameters())

        def run():
            model.train()
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model.head(batching.encode(model, train)), y[train]).backward()
            optimizer.step()
            model.eval()
            batching.logits(model, val)
        return run

    width = base.hidden * base.heads
    x, w = torch.randn(n, width), torch.randn(width, width)

    def products():
        for _ in range(8):
            x @ w

    runs = {name: epoch_fn(cfg) for name, cfg in variants.items()}
    runs[f"8 products [{n:,} x {width}] x [{width} x {width}]"] = products
    times = {name: [] for name in runs}
    for fn in runs.values():
        fn()  # warm-up: cached graph structures, optimiser state
    for _ in range(args.reps):
        for name, fn in runs.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    medians = {name: statistics.median(v) for name, v in times.items()}
    first_gat = list(variants)[1]
    print(f"{args.dataset}: {n:,} nodes; {os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, "
          f"one thread; CPU s per epoch, median of {args.reps}; load average {os.getloadavg()[0]:.1f}")
    print("| run | CPU s/epoch | / " + first_gat + " |")
    print("|---|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value:.3f} | {value / medians[first_gat]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
