"""Speed on one machine: hgimb's training epoch against a minimal hand-written PyG script.

    HGIMB_DATA=<data root> .venv/bin/python scripts/bench_speed.py       # -> BENCHMARKS.md `speed`
    .venv/bin/python scripts/bench_speed.py --datasets acm --models rgcn --reps 5 --no-doc

For every (dataset, model), both sides get the same data, the same settings
(``configs/hgb/<dataset>-<model>.yaml``: hidden size, layers, heads, dropout, Adam lr and weight
decay) and one torch thread:

- **hgimb**: its ``Trainer`` (``train_epoch`` + ``evaluate`` on the validation items: what
  ``Trainer.fit`` does per epoch, without the history row and checkpoint bookkeeping);
- **hand-written**: the plain PyG script a user would write for the same model: a training step
  (forward, cross-entropy on the training items, backward, Adam) and a forward pass in eval mode
  for the validation items. ``rgcn``: PyG ``RGCNConv(aggr="mean")`` on one global node index
  (PyG's layer has one root weight for all node types; hgimb's has one per type);
  ``gat``: ``HeteroConv`` of one ``GATConv`` per relation, per-type linear skip, ELU, as hgimb's
  ``gat`` (which computes the same layer with fused kernels); both use learnable embeddings for
  featureless node types and a dense ``nn.Linear`` for featured ones. ``simple-hgn``: PyG has no
  such layer, so the hand-written side is a bare loop around hgimb's own ``SimpleHGN`` module:
  that row measures the framework's overhead only (trainer, remedy hooks, batching strategy).

Repetitions alternate (hgimb, hand-written, hgimb, ...) after ``--warmup`` epochs each (the first
epoch builds hgimb's cached graph structures); medians are reported, with the ratio
hgimb / hand-written (below 1: hgimb is faster; "overhead < 10%" means the ratio is below 1.10).
Peak memory is measured per side in one extra epoch after the timing: the process's peak
resident set during that epoch (``VmHWM`` after resetting it through ``/proc/self/clear_refs``;
psutil sampling where that is not available) and its increase over the resident set at the start
of the epoch; with CUDA, ``torch.cuda.max_memory_allocated`` of that epoch (skipped on CPU).
The machine, the thread count and the load average are printed with the table: on a shared
machine, wall times inflate with the load, the ratio much less (both sides share it).
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from hgimb.benchkit.docs import machine_facts, replace_section
from hgimb.config import RunConfig
from hgimb.engine.run import load_task
from hgimb.engine.trainer import Trainer, model_config
from hgimb.models import build_model

ROOT = Path(__file__).resolve().parents[1]

SECTION = "speed"
DATASETS = ("freebase", "acm")
MODELS = ("rgcn", "gat", "simple-hgn")
OVERHEAD_LIMIT = 1.10
HAND_WRITTEN = {
    "rgcn": "PyG `RGCNConv`",
    "gat": "PyG `HeteroConv(GATConv)`",
    "simple-hgn": "bare loop, same module",
}
HEADING = """## Speed on one machine

Seconds per full-batch epoch (training step + validation forward pass) of hgimb's trainer against
a minimal hand-written PyG script of the same model on the same data and settings
(`configs/hgb/`); see `scripts/bench_speed.py` for what each side runs.
"""


# ---------------------------------------------------------------------------- hand-written PyG side
class PlainInput(nn.Module):
    """What a plain script does: ``nn.Linear`` on featured node types, ``nn.Embedding`` on the rest."""

    def __init__(self, data, hidden: int):
        super().__init__()
        self.proj = nn.ModuleDict()
        self.embed = nn.ModuleDict()
        for t in data.node_types:
            x = getattr(data[t], "x", None)
            if x is not None:
                self.proj[t] = nn.Linear(x.size(-1), hidden)
            else:
                self.embed[t] = nn.Embedding(int(data[t].num_nodes), hidden)
                nn.init.xavier_uniform_(self.embed[t].weight)

    def forward(self, data) -> Dict[str, torch.Tensor]:
        return {t: self.proj[t](data[t].x) if t in self.proj else self.embed[t].weight for t in data.node_types}


class PlainRGCN(nn.Module):
    """``RGCNConv(aggr="mean")`` layers on one global node index, ReLU, dropout, linear head."""

    def __init__(self, data, target_types, num_classes: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        from torch_geometric.nn import RGCNConv

        self.node_types, self.target_types, self.dropout = list(data.node_types), list(target_types), dropout
        self.input = PlainInput(data, hidden)
        self.offsets, start = {}, 0
        for t in self.node_types:
            self.offsets[t] = start
            start += int(data[t].num_nodes)
        self.num = {t: int(data[t].num_nodes) for t in self.node_types}
        edges, kinds = [], []
        for r, (src, rel, dst) in enumerate(data.edge_types):
            ei = data[(src, rel, dst)].edge_index
            edges.append(ei + torch.tensor([[self.offsets[src]], [self.offsets[dst]]], device=ei.device))
            kinds.append(torch.full((ei.size(1),), r, dtype=torch.long, device=ei.device))
        self.register_buffer("edge_index", torch.cat(edges, 1))
        self.register_buffer("edge_type", torch.cat(kinds))
        self.convs = nn.ModuleList(RGCNConv(hidden, hidden, len(data.edge_types), aggr="mean") for _ in range(layers))
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, data) -> torch.Tensor:
        x_dict = self.input(data)
        x = torch.cat([x_dict[t] for t in self.node_types])
        for conv in self.convs:
            x = F.dropout(F.relu(conv(x, self.edge_index, self.edge_type)), self.dropout, self.training)
        x = torch.cat([x[self.offsets[t]: self.offsets[t] + self.num[t]] for t in self.target_types])
        return self.head(x)


class PlainGAT(nn.Module):
    """``HeteroConv`` of ``GATConv`` per relation (sum over relations), per-type linear skip, ELU,
    dropout, linear head: hgimb's ``gat`` layer written the plain way (all types, all layers)."""

    def __init__(self, data, target_types, num_classes: int, hidden: int, layers: int, heads: int, dropout: float):
        super().__init__()
        from torch_geometric.nn import GATConv, HeteroConv

        head_dim = -(-hidden // heads)
        width = head_dim * heads
        self.target_types, self.dropout = list(target_types), dropout
        self.input = PlainInput(data, width)
        self.convs, self.skips = nn.ModuleList(), nn.ModuleList()
        for _ in range(layers):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*do not occur as destination type.*")
                self.convs.append(HeteroConv({
                    et: GATConv(width if et[0] == et[2] else (width, width), head_dim, heads=heads,
                                dropout=dropout, add_self_loops=False)
                    for et in data.edge_types}, aggr="sum"))
            self.skips.append(nn.ModuleDict({t: nn.Linear(width, width) for t in data.node_types}))
        self.head = nn.Linear(width, num_classes)

    def forward(self, data) -> torch.Tensor:
        x = self.input(data)
        for conv, skip in zip(self.convs, self.skips):
            messages = conv(x, data.edge_index_dict)
            x = {t: F.dropout(F.elu(skip[t](h) + messages[t] if t in messages else skip[t](h)), self.dropout, self.training)
                 for t, h in x.items()}
        return self.head(torch.cat([x[t] for t in self.target_types]))


def hand_written_model(name: str, task, cfg: RunConfig) -> nn.Module:
    data = task.data
    if name == "rgcn":
        return PlainRGCN(data, task.target_types, task.num_classes, cfg.hidden, cfg.layers, cfg.dropout)
    if name == "gat":
        return PlainGAT(data, task.target_types, task.num_classes, cfg.hidden, cfg.layers, cfg.heads, cfg.dropout)
    if name == "simple-hgn":
        return build_model("simple-hgn", task, model_config(cfg))
    raise ValueError(f"no hand-written counterpart for model '{name}'; known: {', '.join(HAND_WRITTEN)}")


class HandWrittenEpoch:
    """The plain loop: one training step and one eval forward pass for the validation items."""

    def __init__(self, name: str, task, cfg: RunConfig, device: torch.device):
        torch.manual_seed(cfg.seed)
        self.model = hand_written_model(name, task, cfg).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.data = task.data.to(device)
        self.y = task.y.to(device)
        self.train_items = task.split["train"].to(device)
        self.val_items = task.split["val"].to(device)

    def __call__(self, epoch: int) -> None:
        self.model.train()
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.model(self.data)[self.train_items], self.y[self.train_items])
        loss.backward()
        self.optimizer.step()
        self.model.eval()
        with torch.no_grad():
            self.model(self.data)[self.val_items]


class HgimbEpoch:
    """hgimb's trainer, one epoch as ``Trainer.fit`` runs it."""

    def __init__(self, task, cfg: RunConfig):
        self.trainer = Trainer.from_config(cfg, task)
        self.val_items = task.split["val"]

    def __call__(self, epoch: int) -> None:
        self.trainer.train_epoch(epoch)
        self.trainer.evaluate(self.val_items)


# ---------------------------------------------------------------------------- measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:  # pragma: no cover - psutil is a dependency of the dev environment
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


_PEAK_BEFORE_RESETS = [0]  # the process's peak RSS (bytes) before the last reset of the counter


def process_peak_rss_mb() -> float:
    """Peak RSS of the whole run: resetting VmHWM also resets what ``ru_maxrss`` reports."""
    current = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
    return max(current, _PEAK_BEFORE_RESETS[0]) / 2**20


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where not possible."""
    _PEAK_BEFORE_RESETS[0] = max(_PEAK_BEFORE_RESETS[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_kernel() -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``), so that the RSS at the start
    of a measurement is the live data and not what earlier epochs left in the allocator."""
    gc.collect()
    try:
        import ctypes
        import ctypes.util

        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: the RSS then includes cached memory
        pass


def peak_memory(step: Callable[[], None], device: torch.device) -> Dict[str, Optional[float]]:
    """Peak RSS (MB) while ``step`` runs, its increase over the RSS at the start, and CUDA's max
    allocated memory (MB; None without CUDA)."""
    _release_free_memory()
    start = rss_bytes()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    sampled = None
    if _reset_peak_rss() and _peak_rss_kernel() is not None:
        step()
        _sync(device)
        peak = _peak_rss_kernel()
        method = "VmHWM"
    else:  # sample the RSS from a thread (coarser: may miss short peaks)
        sampled, stop = [start], threading.Event()

        def sample():
            while not stop.is_set():
                sampled.append(rss_bytes())
                time.sleep(0.002)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        step()
        _sync(device)
        stop.set()
        thread.join()
        peak = max(sampled + [rss_bytes()])
        method = "psutil sampling"
    cuda = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"peak_rss_mb": peak / 2**20, "rss_increase_mb": max(peak - start, 0) / 2**20, "cuda_max_mb": cuda,
            "rss_method": method}


def config_for(dataset: str, model: str, overrides: Optional[dict] = None) -> RunConfig:
    path = ROOT / "configs" / "hgb" / f"{dataset}-{model}.yaml"
    cfg = RunConfig.from_yaml(path) if path.exists() else RunConfig(dataset=dataset, model=model)
    return cfg.replace(quiet=True, **(overrides or {}))


def measure_pair(dataset: str, model: str, reps: int, warmup: int, device: torch.device,
                 root: Optional[str] = None, overrides: Optional[dict] = None, tasks: Optional[dict] = None) -> dict:
    """Time hgimb and the hand-written script on one (dataset, model), interleaved; then memory."""
    cfg = config_for(dataset, model, {"device": str(device), "data_root": root, **(overrides or {})})
    key = (dataset, repr(sorted(cfg.dataset_options.items())))
    tasks = {} if tasks is None else tasks
    if key not in tasks:
        tasks[key] = load_task(cfg)
    task = tasks[key]
    sides = {"hgimb": HgimbEpoch(task, cfg), "hand": HandWrittenEpoch(model, task, cfg, device)}
    wall: Dict[str, List[float]] = {k: [] for k in sides}
    cpu: Dict[str, List[float]] = {k: [] for k in sides}
    load_start = os.getloadavg()[0]
    for rep in range(warmup + reps):
        for name, epoch in sides.items():  # A B A B ...: both sides see the same background load
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            epoch(rep)
            _sync(device)
            if rep >= warmup:
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    memory = {name: peak_memory(lambda e=epoch: e(warmup + reps), device) for name, epoch in sides.items()}
    hgimb_s, hand_s = statistics.median(wall["hgimb"]), statistics.median(wall["hand"])
    row = {
        "dataset": dataset, "model": model, "hand_written": HAND_WRITTEN[model], "reps": reps,
        "hgimb_s": hgimb_s, "hand_s": hand_s, "ratio": hgimb_s / hand_s,
        "hgimb_cpu_s": statistics.median(cpu["hgimb"]), "hand_cpu_s": statistics.median(cpu["hand"]),
        "hgimb_min_s": min(wall["hgimb"]), "hand_min_s": min(wall["hand"]),
        "load_start": load_start, "load_end": os.getloadavg()[0],
    }
    row["overhead_ok"] = row["ratio"] < OVERHEAD_LIMIT
    for name in sides:
        for field, value in memory[name].items():
            row[f"{name}_{field}"] = value
    return row


def run(datasets=DATASETS, models=MODELS, reps: int = 5, warmup: int = 1, device: str = "cpu", threads: int = 1,
        root: Optional[str] = None, overrides: Optional[dict] = None, log=print) -> Dict[str, object]:
    """Measure every (dataset, model); returns ``{"env": ..., "rows": [...]}``."""
    torch.set_num_threads(threads)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    env = {**machine_facts(), "device": str(dev), "load_start": os.getloadavg(), "reps": reps, "warmup": warmup}
    rows, tasks = [], {}
    for dataset in datasets:
        for model in models:
            row = measure_pair(dataset, model, reps, warmup, dev, root, overrides, tasks)
            rows.append(row)
            if log:
                log(f"{dataset} {model}: hgimb {row['hgimb_s']:.3f} s, hand-written {row['hand_s']:.3f} s "
                    f"(x{row['ratio']:.2f}), load {row['load_end']:.1f}")
        tasks.clear()
    env["load_end"] = os.getloadavg()
    env["ru_maxrss_mb"] = process_peak_rss_mb()
    return {"env": env, "rows": rows}


def _mb(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.0f}"


def markdown(result: Dict[str, object]) -> str:
    env, rows = result["env"], result["rows"]
    cuda_col = env["device"].startswith("cuda")
    head = ("| dataset | model | hand-written | hgimb s/epoch | hand-written s/epoch | hgimb / hand | overhead < 10% "
            "| CPU s/epoch (hgimb / hand) | peak RSS MB (hgimb / hand) | RSS increase MB (hgimb / hand) |")
    rule = "|---|---|---|---|---|---|---|---|---|---|"
    if cuda_col:
        head += " CUDA max allocated MB (hgimb / hand) |"
        rule += "---|"
    lines = [head, rule]
    for r in rows:
        line = (f"| {r['dataset']} | {r['model']} | {r['hand_written']} | {r['hgimb_s']:.3f} | {r['hand_s']:.3f} "
                f"| {r['ratio']:.2f} | {'yes' if r['overhead_ok'] else 'no'} "
                f"| {r['hgimb_cpu_s']:.3f} / {r['hand_cpu_s']:.3f} "
                f"| {_mb(r['hgimb_peak_rss_mb'])} / {_mb(r['hand_peak_rss_mb'])} "
                f"| {_mb(r['hgimb_rss_increase_mb'])} / {_mb(r['hand_rss_increase_mb'])} |")
        if cuda_col:
            line += f" {_mb(r['hgimb_cuda_max_mb'])} / {_mb(r['hand_cuda_max_mb'])} |"
        lines.append(line)
    load = f"{env['load_start'][0]:.1f} at the start, {env['load_end'][0]:.1f} at the end (1-minute averages)"
    cuda = (f"CUDA max allocated memory per side in its own column ({env['cuda']})." if cuda_col
            else "No CUDA device here: the CUDA memory column is left out (the script adds it when CUDA is used).")
    methods = sorted({r.get("hgimb_rss_method", "") for r in rows} | {r.get("hand_rss_method", "") for r in rows})
    lines += [
        "",
        f"_Written by `python scripts/bench_speed.py`: {env['device']} on {env['cores']} cores ({env['cpu']}), "
        f"{env['threads']} torch thread(s), torch {env['torch']}, PyG {env['pyg']}; median of {env['reps']} "
        f"interleaved epochs per side after {env['warmup']} warm-up epoch(s). Load average {load} — the machine "
        f"was shared with other jobs, which inflates wall times; the ratio compares both sides under the same load. "
        f"Peak RSS: the process's peak resident set during one extra epoch per side ({', '.join(m for m in methods if m)}), "
        f"and its increase over the resident set at the start of that epoch (the data and both models are resident; "
        f"freed memory is handed back to the OS first, `malloc_trim`). Peak of the whole run (`ru_maxrss`): "
        f"{env['ru_maxrss_mb']:,.0f} MB. {cuda} "
        f"`simple-hgn`'s hand-written side runs hgimb's own module in a bare loop: its ratio is hgimb's framework "
        f"overhead alone; `rgcn` and `gat` compare against PyG's layers._",
    ]
    return "\n".join(lines)


def write_doc(doc: Path, text: str) -> None:
    replace_section(doc, SECTION, text, heading=HEADING)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--reps", type=int, default=5, help="timed epochs per side (interleaved)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs per side first")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--root", default=None, help="data root (default $HGIMB_DATA)")
    parser.add_argument("--doc", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--no-doc", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    result = run([d for d in args.datasets.split(",") if d], [m for m in args.models.split(",") if m],
                 reps=args.reps, warmup=args.warmup, device=args.device, threads=args.threads, root=args.root)
    text = markdown(result)
    print("\n" + text)
    if not args.no_doc:
        write_doc(Path(args.doc), text)
        print(f"\nwritten to {args.doc} (section '{SECTION}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
