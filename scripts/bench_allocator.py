"""Whole-process A/B of hgimb's glibc allocator settings (hgimb/engine/allocator.py).

    HGIMB_DATA=<data root> .venv/bin/python scripts/bench_allocator.py   # -> BENCHMARKS.md `allocator`
    .venv/bin/python scripts/bench_allocator.py --configs acm-hgt --epochs 5 --reps 1 --no-doc

Each side is a fresh ``python -m hgimb.train --config configs/hgb/<name>.yaml --epochs N`` process
with one torch thread (``OMP_NUM_THREADS=1``): "system" with ``HGIMB_MALLOC=system`` (glibc's
defaults), "tuned" without it (hgimb's settings). Sides alternate (system, tuned, system, ...);
per run it records the trainer's seconds per epoch (``metrics.json``) and the process's own user
and system CPU seconds and peak RSS (``os.wait4``). Medians over ``--reps`` pairs are reported.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from hgimb.benchkit.docs import machine, replace_section

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = ("acm-hgt", "acm-han", "acm-gat", "freebase-rgcn")


def one_run(config: str, epochs: int, tuned: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("HGIMB_MALLOC", None)
    if not tuned:
        env["HGIMB_MALLOC"] = "system"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "hgimb.train", "--config", str(ROOT / "configs" / "hgb" / f"{config}.yaml"),
               "--epochs", str(epochs), "--patience", str(epochs + 1), "--no-plots", "--quiet", "--out", str(out)]
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr.decode()[-2000:]}")
        metrics = json.loads((out / "metrics.json").read_text())
    return {"s_epoch": float(metrics["seconds_per_epoch"]), "user": usage.ru_utime, "sys": usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    header = ["config", "s/epoch system → tuned", "ratio", "user CPU s", "system CPU s", "peak RSS MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for config in [c for c in args.configs.split(",") if c]:
        runs = {False: [], True: []}
        for _ in range(args.reps):
            for tuned in (False, True):
                runs[tuned].append(one_run(config, args.epochs, tuned))

        def med(tuned, key):
            return statistics.median(r[key] for r in runs[tuned])

        lines.append("| " + " | ".join([
            config, f"{med(False, 's_epoch'):.3f} → {med(True, 's_epoch'):.3f}",
            f"{med(True, 's_epoch') / med(False, 's_epoch'):.2f}",
            f"{med(False, 'user'):.1f} → {med(True, 'user'):.1f}", f"{med(False, 'sys'):.1f} → {med(True, 'sys'):.1f}",
            f"{med(False, 'rss_mb'):,.0f} → {med(True, 'rss_mb'):,.0f}"]) + " |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + (
        f"\n\n_Written by `python scripts/bench_allocator.py --epochs {args.epochs} --reps {args.reps}`: "
        f"{machine()}, one torch thread per process, medians of {args.reps} interleaved pairs of whole "
        f"processes (CPU seconds and peak RSS include loading the dataset). Load average "
        f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end._")
    print(text)
    if not args.no_doc:
        replace_section(ROOT / "BENCHMARKS.md", "allocator", text, heading="### Allocator settings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
