"""Smoke test of scripts/bench_speed.py on the synthetic graph (2 repetitions, a few seconds)."""
import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_speed.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result(bench):
    threads = torch.get_num_threads()
    try:
        return bench.run(["synthetic"], ["rgcn", "gat", "simple-hgn"], reps=2, warmup=1, log=None,
                         overrides={"dataset_options": {"num_movies": 200}, "hidden": 16, "heads": 2, "epochs": 5})
    finally:
        torch.set_num_threads(threads)


def test_rows_have_every_field(result):
    env, rows = result["env"], result["rows"]
    assert [(r["dataset"], r["model"]) for r in rows] == [("synthetic", m) for m in ("rgcn", "gat", "simple-hgn")]
    for r in rows:
        assert r["reps"] == 2
        for side in ("hgimb", "hand"):
            assert r[f"{side}_s"] > 0 and r[f"{side}_cpu_s"] >= 0 and r[f"{side}_min_s"] <= r[f"{side}_s"]
            assert r[f"{side}_peak_rss_mb"] > 0 and r[f"{side}_rss_increase_mb"] >= 0
            assert r[f"{side}_cuda_max_mb"] is None  # CPU run: the CUDA measurement is skipped
        assert r["ratio"] == pytest.approx(r["hgimb_s"] / r["hand_s"])
        assert r["overhead_ok"] == (r["ratio"] < 1.10)
    assert env["threads"] == 1 and env["device"] == "cpu" and env["cores"] >= 1
    assert len(env["load_start"]) == 3 and env["ru_maxrss_mb"] > 0


def test_markdown_and_doc_section(bench, result, tmp_path):
    text = bench.markdown(result)
    assert text.startswith("| dataset | model | hand-written | hgimb s/epoch | hand-written s/epoch | hgimb / hand |")
    assert "| synthetic | simple-hgn | bare loop, same module |" in text
    assert "1 torch thread" in text and "Load average" in text and "CUDA" in text
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nother text\n")
    bench.write_doc(doc, text)
    bench.write_doc(doc, text.replace("synthetic", "synthetic2"))  # rewrites the section in place
    content = doc.read_text()
    assert content.count("<!-- table:speed -->") == 1 and content.count("## Speed on one machine") == 1
    assert "synthetic2" in content and "| synthetic |" not in content and "other text" in content


def test_cuda_request_without_cuda_is_refused(bench):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(SystemExit):
        bench.main(["--device", "cuda", "--no-doc"])
