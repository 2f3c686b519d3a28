"""Scale of mini-batch training on the synthetic Freebase-schema graph -> BENCHMARKS.md ``scale``.

    python scripts/bench_scale.py                       # 0.1M, 1M and 5M nodes; table + docs/scale.png
    python scripts/bench_scale.py --sizes 0.1M,1M       # some sizes (results of others are kept)
    python scripts/bench_scale.py --sizes 5M --modes on # one mode
    python scripts/bench_scale.py --report-only         # rewrite table and plot from stored results

Per size (each in a fresh process, so that the peak resident memory is that size's alone):
generation of the graph (``hgimb.data.synthetic``, including the Task's validation); building the
sampler's per-relation CSR (once per graph); sampled-batch throughput in seed nodes per second for
``--batches`` batches of 1024 training movies, fanout 10,10 (the sampler alone); then
``--train-batches`` real training steps through the trainer's ``neighbor-sampling`` subgraphs
(2-layer, 64-wide RGCN: sampling, forward, cross-entropy on the seeds, backward, optimiser step,
each timed), with ``--sparse-embeddings off`` (dense table gradients, torch Adam) and ``on``
(row-sparse gradients, ``LazyAdam``), each size and mode in its own process; peak RSS
(``resource.getrusage``). One torch thread. Results are stored in
``runs/bench-scale/results.json`` (one entry per size and mode).
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
TRAIN_WARMUP = 3  # training steps before timing (optimiser state allocation)
MODES = ("off", "on")  # --sparse-embeddings

HEADING = """## Scale: mini-batch training on a synthetic Freebase-schema graph

The synthetic movie graph (`hgimb/data/synthetic.py`, Freebase's schema, average 20 people per
movie, every relation in both directions) at 0.1M, 1M and 5M nodes; neighbour sampling with
`hgimb/engine/sampling.py` (plain-torch backend), batches of 1024 seed movies, fanout 10,10.
"""


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux: kilobytes


def worker(label: str, batches: int, train_batches: int, sparse: str) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    from hgimb.config import RunConfig
    from hgimb.data import load_dataset
    from hgimb.engine.batching import NeighborSampling
    from hgimb.engine.optim import configure_sparse, sparse_optimizer
    from hgimb.engine.trainer import make_optimizer
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
    needed = (batches + train_batches + TRAIN_WARMUP + 5) * SEED_BATCH
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
    run_cfg = RunConfig(dataset="synthetic", batch_size=SEED_BATCH, fanout=FANOUT, seed=SEED, lr=0.002,
                        weight_decay=5e-4, sparse_embeddings=sparse)
    sparse_on = configure_sparse(run_cfg, model, minibatch=True)
    optimizer = sparse_optimizer(run_cfg, model.parameters()) if sparse_on else make_optimizer(run_cfg, model.parameters())
    y = task.y
    fanout_hops = batching._model_fanout(model, full=False)
    phases = dict(sampling=0.0, forward=0.0, backward=0.0, optimizer=0.0)
    train_chunks = chunks[5 + batches:]
    for i, chunk in enumerate(train_chunks):
        t0 = time.perf_counter()
        items, inverse = torch.unique(chunk, return_inverse=True)
        sub = batching._subgraph(items, fanout_hops, generator)
        t1 = time.perf_counter()
        h = model.encode(sub)[inverse]
        loss = F.cross_entropy(model.head(h), y[chunk])
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if i >= TRAIN_WARMUP:  # the first steps allocate the optimiser state
            for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[name] += seconds
    train_s = sum(phases.values())
    timed = len(train_chunks) - TRAIN_WARMUP
    return {
        "label": label, "num_nodes": num_nodes, "num_edges": num_edges, "generate_s": generate_s, "csr_s": csr_s,
        "batches": batches, "train_batches": timed, "sparse": sparse, "sparse_on": sparse_on,
        "sampler_seeds_per_s": batches * SEED_BATCH / sampler_s,
        "train_seeds_per_s": timed * SEED_BATCH / train_s,
        "step_ms": {k: 1000 * v / timed for k, v in phases.items()},
        "nodes_per_batch": nodes / batches, "edges_per_batch": edges / batches,
        "rss_graph_gb": rss_graph, "peak_rss_gb": peak_rss_gb(),
        "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg()),
        "torch": torch.__version__, "measured": time.strftime("%Y-%m-%d %H:%M"),
    }


def load_store() -> dict:
    store = json.loads(STORE.read_text()) if STORE.exists() else {}
    return {k: v for k, v in store.items() if "/" in k}  # entries of the previous layout (no mode) are dropped


def _rows(store: dict):
    return [store[f"{size}/{mode}"] for size in SIZES for mode in MODES if f"{size}/{mode}" in store]


def render(store: dict) -> str:
    rows = _rows(store)
    lines = ["| nodes | edges | --sparse-embeddings | sampled nodes / edges per batch | sampler (seeds/s) "
             "| training step (seeds/s) | vs 0.1M | step ms: sampling / forward / backward / optimiser | peak RSS (GB) "
             "| generate / CSR (s) | load avg (start-end) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    smallest = {}
    for r in rows:
        smallest.setdefault(r["sparse"], r["train_seeds_per_s"])
        ms = r["step_ms"]
        lines.append(
            f"| {r['num_nodes']:,} | {r['num_edges']:,} | {r['sparse']} "
            f"| {r['nodes_per_batch']:,.0f} / {r['edges_per_batch']:,.0f} | {r['sampler_seeds_per_s']:,.0f} "
            f"| {r['train_seeds_per_s']:,.0f} | {100 * r['train_seeds_per_s'] / smallest[r['sparse']]:.0f}% "
            f"| {ms['sampling']:.0f} / {ms['forward']:.0f} / {ms['backward']:.0f} / {ms['optimizer']:.0f} "
            f"| {r['peak_rss_gb']:.2f} | {r['generate_s']:.1f} / {r['csr_s']:.1f} "
            f"| {r['loadavg_start'][0]:.1f}-{r['loadavg_end'][0]:.1f} |")
    batches = sorted({(r["batches"], r["train_batches"]) for r in rows})
    note = (f"\n\n![throughput and memory against graph size](docs/scale.png)\n\n"
            f"_Measured with `python scripts/bench_scale.py` (graph seed {SEED}, sampling seed {SEED}; each size and "
            f"mode in its own process) on {os.cpu_count()} CPU cores ({platform.machine()}), torch "
            f"{rows[0]['torch'] if rows else '?'}, one torch thread; batches (sampler only, timed training steps after "
            f"{TRAIN_WARMUP} untimed ones) {batches}. Throughput counts seed nodes (1024 per batch). A training step is "
            f"sampling, forward, backward and the optimiser step of a 2-layer, 64-wide RGCN on the sampled subgraph "
            f"(Adam, lr 0.002, weight decay 5e-4, as a mini-batch run); people have no features and train learnable "
            f"id tables (about 3.7 of every 3.8 nodes): `off` gives them a dense table-sized gradient and torch's "
            f"Adam over every row, `on` a row-sparse gradient and `LazyAdam` (hgimb/engine/optim.py) over the "
            f"touched rows. \"vs 0.1M\": throughput relative to the 0.1M-node graph in the same mode. Peak RSS is the "
            f"whole process (graph, CSR, model, gradients, optimiser state). The machine was shared with other jobs "
            f"(1-minute load average in the last column, 2 cores), so absolute throughputs are lower than on an idle "
            f"machine._")
    return "\n".join(lines) + note


def plot(store: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for mode, marker in zip(MODES, ("s", "o")):
        rows = [store[f"{size}/{mode}"] for size in SIZES if f"{size}/{mode}" in store]
        if not rows:
            continue
        nodes = [r["num_nodes"] for r in rows]
        left.plot(nodes, [r["train_seeds_per_s"] for r in rows], marker + "-", label=f"training step, sparse {mode}")
        right.plot(nodes, [r["peak_rss_gb"] for r in rows], marker + "-", label=f"peak RSS (GB), sparse {mode}")
        if mode == MODES[0]:
            left.plot(nodes, [r["sampler_seeds_per_s"] for r in rows], "^--", label="sampler only")
    left.set(xscale="log", yscale="log", xlabel="graph nodes", ylabel="seed nodes / s",
             title="Throughput (1024 seeds, fanout 10,10)")
    left.legend()
    right.axhline(6.0, color="grey", linestyle=":", label="6 GB target")
    right.set(xscale="log", xlabel="graph nodes", title="Peak resident memory")
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
    parser.add_argument("--modes", default=",".join(MODES), help="--sparse-embeddings modes to run: off, on")
    parser.add_argument("--batches", type=int, default=100, help="sampler-only batches per size")
    parser.add_argument("--train-batches", type=int, default=20, help="timed training steps per size and mode")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--doc", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sparse", default="off", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batches, args.train_batches, args.sparse)))
        return 0
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [s for s in sizes if s not in SIZES] + [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown size(s) or mode(s) {unknown}; valid: {', '.join(SIZES)}; {', '.join(MODES)}")
    store = load_store()
    print(f"machine: {os.cpu_count()} CPU cores ({platform.machine()}), Python {platform.python_version()}, one torch "
          f"thread; graph seed {SEED}, sampling seed {SEED}; load average {os.getloadavg()}", flush=True)
    if not args.report_only:
        STORE.parent.mkdir(parents=True, exist_ok=True)
        for label in sizes:
            for mode in modes:
                proc = subprocess.run([sys.executable, __file__, "--worker", label, "--batches", str(args.batches),
                                       "--train-batches", str(args.train_batches), "--sparse", mode],
                                      capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                if proc.returncode != 0:
                    print(proc.stderr, file=sys.stderr)
                    return proc.returncode
                key = f"{label}/{mode}"
                store[key] = json.loads(proc.stdout.strip().splitlines()[-1])
                STORE.write_text(json.dumps(store, indent=1))
                r = store[key]
                ms = r["step_ms"]
                print(f"{key}: {r['num_nodes']:,} nodes, {r['num_edges']:,} edges; sampler {r['sampler_seeds_per_s']:,.0f} "
                      f"seeds/s, training step {r['train_seeds_per_s']:,.0f} seeds/s (ms: sampling {ms['sampling']:.0f}, "
                      f"forward {ms['forward']:.0f}, backward {ms['backward']:.0f}, optimiser {ms['optimizer']:.0f}); "
                      f"peak RSS {r['peak_rss_gb']:.2f} GB; load average {r['loadavg_start'][0]:.2f} -> "
                      f"{r['loadavg_end'][0]:.2f}", flush=True)
    if not store:
        print("no stored results; run without --report-only first", file=sys.stderr)
        return 1
    if args.doc:
        plot(store, PLOT)
        from hgimb.benchkit.docs import replace_section

        replace_section(Path(args.doc), SECTION, render(store), heading=HEADING)
    print(render(store))
    return 0


if __name__ == "__main__":
    sys.exit(main())
