"""Milliseconds per Cora epoch (one training step + one validation pass) for the homogeneous
backbones, one torch thread: the cost behind BENCHMARKS section 3's tables.

    python scripts/bench_lt_speed.py                        # gcn, sage, gatconv; 200 timed epochs
    python scripts/bench_lt_speed.py --models gcn --model-option style=reference --hidden 256
    python scripts/bench_lt_speed.py --models gcn,sage --against 984e55e   # A/B with an older commit

``--against REF`` loads ``hgimb/models/homogeneous.py`` as it was at git ``REF`` (read with
``git show``), registers its models as ``<name>@REF`` and times old and new alternately in one
process, so both see the same machine load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
import torch  # noqa: E402

from hgimb.cli import parse_key_values  # noqa: E402
from hgimb.config import RunConfig  # noqa: E402
from hgimb.engine.run import load_task  # noqa: E402
from hgimb.engine.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def epoch_ms(cfg: RunConfig, epochs: int, warmup: int = 10) -> float:
    task = load_task(cfg)
    trainer = Trainer.from_config(cfg, task)
    val = task.split["val"]
    times = []
    for epoch in range(warmup + epochs):
        t0 = time.perf_counter()
        trainer.train_epoch(epoch)
        trainer.evaluate(val)
        if epoch >= warmup:
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def register_old(ref: str) -> None:
    """Register the gcn/sage of ``hgimb/models/homogeneous.py`` at git ``ref`` as ``gcn@ref``/``sage@ref``."""
    import re
    import subprocess

    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:hgimb/models/homogeneous.py"], check=True,
                         capture_output=True, text=True).stdout
    src = re.sub(r'register_model\("(\w+)"', lambda m: f'register_model("{m.group(1)}@{ref}"', src)
    src = src.replace("from ..", "from hgimb.").replace("from .base", "from hgimb.models.base").replace(
        "from .registry", "from hgimb.models.registry").replace("from .sparse", "from hgimb.models.sparse")
    import hgimb.models._load_all  # noqa: F401  (the current models first)

    namespace = {"__name__": f"homogeneous_{ref}"}
    if re.search(r"^from hgimb\.models\.sparse import ", src, flags=re.M):
        # a ref older than the hgimb.models.sparse package imports every kernel from one module
        from hgimb.models.sparse import attention, cache, csr, dense

        src = re.sub(r"^from hgimb\.models\.sparse import .*$", "", src, flags=re.M)
        for module in (attention, cache, csr, dense):
            namespace.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    exec(compile(src, f"homogeneous.py@{ref}", "exec"), namespace)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="gcn,sage,gatconv")
    parser.add_argument("--remedy", default="none")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--model-option", action="append", default=[])
    parser.add_argument("--dataset-option", action="append", default=[])
    parser.add_argument("--against", default=None, help="git ref whose gcn/sage to time alternately with today's")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models = args.models.split(",")
    if args.against:
        register_old(args.against)
        models = [name for m in models for name in (f"{m}@{args.against}", m)]
    for model in models:
        cfg = RunConfig(dataset="cora", model=model, remedy=args.remedy, hidden=args.hidden, imbalance_ratio=10,
                        imbalance_type="step", model_options=parse_key_values(args.model_option, "--model-option"),
                        dataset_options=parse_key_values(args.dataset_option, "--dataset-option"))
        try:
            ms = epoch_ms(cfg, args.epochs)
        except Exception as exc:  # a model this checkout lacks
            print(f"{model}: {type(exc).__name__}: {exc}")
            continue
        print(f"{model} hidden={args.hidden} {args.model_option or ''} remedy={args.remedy}: {ms:.2f} ms/epoch "
              f"(median of {args.epochs})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
