"""Scale of mini-batch training on the synthetic Freebase-schema graph -> BENCHMARKS.md ``scale``.

    python scripts/bench_scale.py                       # 0.1M, 1M and 5M nodes; table + docs/scale.png
    python scripts/bench_scale.py --sizes 0.1M,1M       # some sizes (results of others are kept)
    python scripts/bench_scale.py --report-only         # rewrite table and plot from stored results

Per size (each in a fresh process, so that the peak resident memory is that size's alone):
generation of the graph (``hgimb.data.synthetic``, including the Task's validation); building the
sampler's per-relation CSR (once per graph); sampled-batch throughput in seed nodes per second for
``--batches`` batches of 1024 training movies, fanout 10,10 (the sampler alone, then sampler +
RGCN forward and backward through the trainer's ``neighbor-sampling`` strategy: 2 layers, hidden
64, cross-entropy on the seeds; no optimiser step); peak RSS (``resource.getrusage``). One torch
thread. Results are stored in ``runs/bench-scale/results.json`` (one entry per size).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

STORE = ROOT / "runs" / "bench-scale" / "results.json"
PLOT = ROOT / "docs" / "scale.png"
SECTION = "scale"
SIZES = {"0.1M": 100_000, "1M": 1_000_000, "5M": 5_000_000}
NODES_PER_MOVIE = 3.8  # synthetic: 1 movie + 2 actors + 0.3 directors + 0.5 writers
SEED_BATCH = 1024
FANOUT = "10,10"
# 20 people per movie: 2 * 20 * num_movies directed edges = about 10.5 edges per node, so the
# 5M-node graph has the 50M edges the scale target names
AVG_DEGREE = 20.0
SEED = 0

HEADING = """## Scale: mini-batch training on a synthetic Freebase-schema graph

The synthetic movie graph (`hgimb/data/synthetic.py`, Freebase's schema, average 20 people per
movie, every relation in both directions) at 0.1M, 1M and 5M nodes; neighbour sampling with
`hgimb/engine/sampling.py` (plain-torch backend), batches of 1024 seed movies, fanout 10,10.
"""


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux: kilobytes


def worker(label: str, batches: int, train_batches: int) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    from hgimb.config import RunConfig
    from hgimb.data import load_dataset
    from hgimb.engine.batching import NeighborSampling
    from hgimb.models import ModelConfig, build_model

    load_start = os.getloadavg()
    num_movies = int(round(SIZES[label] / NODES_PER_MOVIE))
    start = time.perf_counter()
    task = load_dataset("synthetic", num_movies=num_movies, avg_degree=AVG_DEGREE, seed=SEED)
    generate_s = time.perf_counter() - start
    data = task.data
    num_nodes = sum(int(data[t].num_nodes) for t in data.node_types)
    num_edges = sum(int(data[et].edge_index.size(1)) for et in data.edge_types)
    rss_graph = peak_rss_gb()

    cfg = RunConfig(dataset="synthetic", batch_size=SEED_BATCH, fanout=FANOUT, seed=SEED)
    batching = NeighborSampling(task, cfg, torch.device("cpu"))
    sampler = batching.sampler
    start = time.perf_counter()
    sampler.prepare()
    csr_s = time.perf_counter() - start

    generator = torch.Generator().manual_seed(SEED)
    train = task.split["train"]
    order = train[torch.randperm(train.numel(), generator=generator)]
    needed = (batches + train_batches + 5) * SEED_BATCH
    order = order.repeat((needed + order.numel() - 1) // order.numel())
    chunks = list(torch.split(order[: needed], SEED_BATCH))
    fanout = [int(f) for f in FANOUT.split(",")]

    def sample(chunk):
        items = torch.unique(chunk)
        return sampler.sample({"movie": items}, fanout, generator)

    for chunk in chunks[:5]:  # warm-up
        sample(chunk)
    nodes = edges = 0
    start = time.perf_counter()
    for chunk in chunks[5: 5 + batches]:
        sub = sample(chunk)
        nodes += sum(int(sub[t].num_nodes) for t in sub.node_types)
        edges += sum(int(sub[et].edge_index.size(1)) for et in sub.edge_types)
    sampler_s = time.perf_counter() - start

    torch.manual_seed(SEED)
    model = build_model("rgcn", task, ModelConfig(hidden=64, layers=2, dropout=0.5)).train()
    y = task.y
    start = time.perf_counter()
    for chunk in chunks[5 + batches:]:
        h = batching.encode(model, chunk)
        loss = F.cross_entropy(model.head(h), y[chunk])
        loss.backward()
        model.zero_grad(set_to_none=True)
    train_s = time.perf_counter() - start
    return {
        "label": label, "num_nodes": num_nodes, "num_edges": num_edges, "generate_s": generate_s, "csr_s": csr_s,
        "batches": batches, "train_batches": train_batches,
        "sampler_seeds_per_s": batches * SEED_BATCH / sampler_s,
        "train_seeds_per_s": train_batches * SEED_BATCH / train_s,
        "nodes_per_batch": nodes / batches, "edges_per_batch": edges / batches,
        "rss_graph_gb": rss_graph, "peak_rss_gb": peak_rss_gb(),
        "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg()),
        "torch": torch.__version__, "measured": time.strftime("%Y-%m-%d %H:%M"),
    }


def load_store() -> dict:
    return json.loads(STORE.read_text()) if STORE.exists() else {}


def render(store: dict) -> str:
    rows = [store[k] for k in SIZES if k in store]
    lines = ["| nodes | edges | generate (s) | CSR build (s) | sampled nodes / edges per batch | sampler (seeds/s) "
             "| sampler + RGCN fwd/bwd (seeds/s) | peak RSS (GB) | load avg (start-end) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['num_nodes']:,} | {r['num_edges']:,} | {r['generate_s']:.1f} | {r['csr_s']:.1f} "
            f"| {r['nodes_per_batch']:,.0f} / {r['edges_per_batch']:,.0f} | {r['sampler_seeds_per_s']:,.0f} "
            f"| {r['train_seeds_per_s']:,.0f} | {r['peak_rss_gb']:.2f} "
            f"| {r['loadavg_start'][0]:.1f}-{r['loadavg_end'][0]:.1f} |")
    batches = sorted({(r["batches"], r["train_batches"]) for r in rows})
    note = (f"\n\n![throughput and memory against graph size](docs/scale.png)\n\n"
            f"_Measured with `python scripts/bench_scale.py` (graph seed {SEED}, sampling seed {SEED}; each size in "
            f"its own process) on {os.cpu_count()} CPU cores ({platform.machine()}), torch {rows[0]['torch'] if rows else '?'}, "
            f"one torch thread; batches (sampler only, sampler + RGCN) {batches}. Throughput counts seed nodes "
            f"(1024 per batch). The sampler + RGCN step is forward and backward of a 2-layer, 64-wide RGCN on the "
            f"sampled subgraph, no optimiser step; people have no features, so their learnable embedding tables "
            f"(about 3.7 of every 3.8 nodes) get a dense gradient the size of the whole table at every step, which "
            f"is what grows with the graph. Peak RSS is the whole process (graph, CSR, model, gradients). "
            f"The machine was shared with another benchmark grid (1-minute load average in the last column, "
            f"2 cores), so throughputs are lower than on an idle machine._")
    return "\n".join(lines) + note


def plot(store: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [store[k] for k in SIZES if k in store]
    nodes = [r["num_nodes"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(nodes, [r["sampler_seeds_per_s"] for r in rows], "o-", label="sampler only")
    left.plot(nodes, [r["train_seeds_per_s"] for r in rows], "s-", label="sampler + RGCN fwd/bwd")
    left.set(xscale="log", yscale="log", xlabel="graph nodes", ylabel="seed nodes / s",
             title="Throughput (1024 seeds, fanout 10,10)")
    left.legend()
    right.plot(nodes, [r["peak_rss_gb"] for r in rows], "o-", color="C2", label="peak RSS (GB)")
    right.plot(nodes, [r["generate_s"] for r in rows], "s--", color="C3", label="generate (s)")
    right.plot(nodes, [r["csr_s"] for r in rows], "^--", color="C4", label="CSR build (s)")
    right.set(xscale="log", yscale="log", xlabel="graph nodes", title="Memory and set-up time")
    right.legend()
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, from {', '.join(SIZES)}")
    parser.add_argument("--batches", type=int, default=300, help="sampler-only batches per size")
    parser.add_argument("--train-batches", type=int, default=100, help="sampler + RGCN batches per size")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--doc", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batches, args.train_batches)))
        return 0
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; valid: {', '.join(SIZES)}")
    store = load_store()
    print(f"machine: {os.cpu_count()} CPU cores ({platform.machine()}), Python {platform.python_version()}, one torch "
          f"thread; graph seed {SEED}, sampling seed {SEED}; load average {os.getloadavg()}", flush=True)
    if not args.report_only:
        STORE.parent.mkdir(parents=True, exist_ok=True)
        for label in sizes:
            proc = subprocess.run([sys.executable, __file__, "--worker", label, "--batches", str(args.batches),
                                   "--train-batches", str(args.train_batches)],
                                  capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            store[label] = json.loads(proc.stdout.strip().splitlines()[-1])
            STORE.write_text(json.dumps(store, indent=1))
            r = store[label]
            print(f"{label}: {r['num_nodes']:,} nodes, {r['num_edges']:,} edges; generate {r['generate_s']:.1f} s, "
                  f"CSR {r['csr_s']:.1f} s; sampler {r['sampler_seeds_per_s']:,.0f} seeds/s, sampler+RGCN "
                  f"{r['train_seeds_per_s']:,.0f} seeds/s; peak RSS {r['peak_rss_gb']:.2f} GB; load average "
                  f"{r['loadavg_start'][0]:.2f} -> {r['loadavg_end'][0]:.2f}", flush=True)
    if not store:
        print("no stored results; run without --report-only first", file=sys.stderr)
        return 1
    plot(store, PLOT)
    text = render(store)
    from bench_docs import replace_section

    replace_section(Path(args.doc), SECTION, text, heading=HEADING)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
