"""scripts/gpu_check.py runs end to end on CPU at tiny sizes (the same code path as on CUDA)."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HGIMB_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_gpu_check_tiny_on_cpu(tmp_path):
    done = run("--device", "cpu", "--tiny", "--out", str(tmp_path / "store"), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| case")]
    assert len(rows) == 8  # every case, each with and without --amp
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] != "–" and cells[2] != "–", line  # seconds per epoch, both precisions
        assert cells[5] != "–" and cells[6] != "–", line  # test macro-F1, both precisions
    # a second call reuses the store (resumable) and can put a CPU store beside it
    again = run("--device", "cpu", "--tiny", "--cases", "acm-rgcn", "--out", str(tmp_path / "store"),
                "--cpu-store", str(tmp_path / "store"), tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "–" not in again.stdout.splitlines()[2].split("|", 8)[-1]


def test_unknown_case_is_refused(tmp_path):
    done = run("--device", "cpu", "--cases", "nope", tmp_path=tmp_path)
    assert done.returncode == 2 and "unknown case(s) ['nope']" in done.stderr
