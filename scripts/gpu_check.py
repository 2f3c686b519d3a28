"""GPU check (issue 17): the main training paths on CUDA, with and without ``--amp``, in one short
script (about 8 minutes on one GPU).

    python scripts/gpu_check.py                                   # on CUDA; table to stdout
    python scripts/gpu_check.py --cpu-store bench/gpu-check-cpu   # with CPU numbers beside it
    python scripts/gpu_check.py --device cpu --cases acm-rgcn,acm-gat --out bench/gpu-check-cpu
    python scripts/gpu_check.py --device cpu --tiny               # the same code path on tiny data (tests)

Cases: full-batch RGCN / GAT / Simple-HGN on ACM and Freebase (their ``configs/hgb`` files),
mini-batch RGCN on the 5M-node synthetic graph (neighbour sampling, 1,024 seeds per step, one
epoch over 2% of the movies as training seeds), CGCNN on magnetic-tc (``configs/magnetic-tc.yaml``).
Each runs once with ``--amp off`` and once with ``--amp on`` (float16 + gradient scaler on CUDA,
bfloat16 on CPU), seed 0, through the bench runner (resumable store ``--out``). The table gives
seconds per epoch, peak CUDA memory (``torch.cuda.max_memory_allocated``) and test macro-F1; with
``--cpu-store`` the same configs' CPU rows (run with ``--device cpu``) stand beside them.
``--tiny`` swaps the data for a 300-movie synthetic graph and 12 generated crystals and trains
2 epochs: a smoke test of the code path, not a measurement.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

from hgimb.benchkit import load_results, run_grid, run_id
from hgimb.benchkit.docs import machine
from hgimb.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_5M = {"dataset": "synthetic", "dataset_options": {"num_movies": 1_315_789, "avg_degree": 20.0},
                "model": "rgcn", "batch_size": 1024, "fanout": "10,10", "epochs": 1, "patience": 1,
                "train_fraction": 0.02, "test_fraction": 0.02}
CASES = {f"{d}-{m}": {"config": f"configs/hgb/{d}-{m}.yaml"}
         for d in ("acm", "freebase") for m in ("rgcn", "gat", "simple-hgn")}
CASES["synthetic5m-rgcn-minibatch"] = {"values": SYNTHETIC_5M}
CASES["magnetic-tc-cgcnn"] = {"config": "configs/magnetic-tc.yaml"}
AMP = ("off", "on")


def tiny_crystals(folder: Path) -> str:
    from pymatgen.core import Lattice, Structure

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(12):
        Structure(Lattice.cubic(4.0 + 0.1 * i), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
            filename=str(folder / f"x{i}.cif"))
        rows.append(f"x{i},{int(i % 3 == 0)}")
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return f"crystal:{folder}"


def case_config(name: str, device: str, amp: str, tiny_crystal: str | None) -> RunConfig:
    spec = CASES[name]
    if "config" in spec:
        values = RunConfig.read_yaml(ROOT / spec["config"])
    else:
        values = dict(spec["values"])
    values.update(seed=0, device=device, amp=amp, quiet=True, plots=False)
    if tiny_crystal is not None:  # smoke-test sizes
        values.update(epochs=2, patience=2, hidden=16)
        values.pop("threshold", None) if name.startswith("magnetic") else None
        if name.startswith("magnetic"):
            values.update(dataset=tiny_crystal, batch_size=4, split="stratified", train_fraction=0.5,
                          test_fraction=0.25, remedy="none")
        else:
            values.update(dataset="synthetic", dataset_options={"num_movies": 300}, metapaths=None)
            values.pop("train_fraction", None), values.pop("test_fraction", None)
    return RunConfig.from_dict(values, source=f"gpu check case {name}")


def cell(row, key, digits, scale=1.0):
    if row is None or key not in row or pd.isna(row[key]):
        return "–"
    return f"{scale * float(row[key]):.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--out", default=None, help="bench store (default bench/gpu-check-<device>)")
    parser.add_argument("--cpu-store", default=None, help="store of the same cases run with --device cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny data, 2 epochs: a smoke test of the code path")
    args = parser.parse_args()
    names = args.cases.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; valid: {', '.join(CASES)}")
    out = Path(args.out or ROOT / "bench" / f"gpu-check-{args.device.replace(':', '')}")
    with tempfile.TemporaryDirectory() as tmp:
        crystal = tiny_crystals(Path(tmp) / "crystals") if args.tiny else None
        configs = {(n, amp): case_config(n, args.device, amp, crystal) for n in names for amp in AMP}
        outcome = run_grid(list(configs.values()), out, workers=1, quiet=True)
        if outcome.interrupted:
            return 130
    rows = load_results(out).set_index("run_id")
    cpu = load_results(args.cpu_store).set_index("run_id") if args.cpu_store else None

    def row(frame, cfg):
        key = run_id(cfg)
        return frame.loc[key] if frame is not None and key in frame.index and frame.loc[key]["status"] == "ok" else None

    lines = [f"| case | s/epoch | s/epoch --amp | peak CUDA MB | peak CUDA MB --amp | test macro-F1 | "
             f"test macro-F1 --amp | CPU s/epoch | CPU macro-F1 |", "|---|---|---|---|---|---|---|---|---|"]
    failed = 0
    for name in names:
        off, on = row(rows, configs[(name, "off")]), row(rows, configs[(name, "on")])
        failed += (off is None) + (on is None)
        ref = row(cpu, configs[(name, "off")].replace(device="cpu"))
        lines.append(f"| {name} | {cell(off, 'seconds_per_epoch', 3)} | {cell(on, 'seconds_per_epoch', 3)} | "
                     f"{cell(off, 'peak_cuda_mb', 0)} | {cell(on, 'peak_cuda_mb', 0)} | "
                     f"{cell(off, 'test_macro_f1', 2, 100)} | {cell(on, 'test_macro_f1', 2, 100)} | "
                     f"{cell(ref, 'seconds_per_epoch', 3)} | {cell(ref, 'test_macro_f1', 2, 100)} |")
    print("\n".join(lines))
    print(f"\n_`python scripts/gpu_check.py --device {args.device}{' --tiny' if args.tiny else ''}`, seed 0, on "
          f"{machine()}; --amp on = float16 with a gradient scaler on CUDA, bfloat16 on CPU._")
    if failed:
        print(f"{failed} run(s) did not finish: see {out}/logs", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
