"""The scale/speed scripts run end to end at tiny sizes (scripts/bench_simple_hgn.py,
scripts/bench_scale.py's table)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def test_bench_simple_hgn_prints_epochs_against_gat():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_simple_hgn.py"), "--dataset", "synthetic",
                           "--dataset-option", "num_movies=60", "--reps", "1"],
                          capture_output=True, text=True, timeout=240,
                          # the repo root stands in for the installed package the script imports
                          env={"OMP_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    names = [r[0].strip() for r in rows[1:]]
    assert names[:3] == ["simple-hgn (4 heads x 64)", "gat (8 heads x 8)", "gat (4 heads x 64)"]
    assert names[3].startswith("8 products [228 x 256]")
    assert float(rows[2][2]) == 1.0 and all(float(r[1]) > 0 for r in rows[1:])


def test_bench_scale_table_reports_throughput_against_the_smallest_graph():
    import bench_scale

    def row(label, mode, nodes, seeds_per_s, rss):
        return {"label": label, "num_nodes": nodes, "num_edges": 10 * nodes, "sparse": mode, "nodes_per_batch": 1000,
                "edges_per_batch": 2000, "sampler_seeds_per_s": 5000, "train_seeds_per_s": seeds_per_s,
                "step_ms": {"sampling": 1, "forward": 2, "backward": 3, "optimizer": 4}, "peak_rss_gb": rss,
                "generate_s": 1.0, "csr_s": 0.5, "loadavg_start": [1.0], "loadavg_end": [1.5], "batches": 10,
                "train_batches": 5, "torch": "x"}

    store = {"0.1M/off": row("0.1M", "off", 100_000, 1000.0, 0.5), "5M/off": row("5M", "off", 5_000_000, 100.0, 8.0),
             "0.1M/on": row("0.1M", "on", 100_000, 1200.0, 0.5), "5M/on": row("5M", "on", 5_000_000, 600.0, 5.0)}
    text = bench_scale.render(store)
    lines = [line for line in text.splitlines() if line.startswith("| 5,000,000")]
    assert "| off |" in lines[0] and "| 10% |" in lines[0] and "| on |" in lines[1] and "| 50% |" in lines[1]
