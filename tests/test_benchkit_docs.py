"""hgimb.benchkit.docs: the helpers the scripts under scripts/ write their tables with, and the
mini-batch script's grid + renderer over the runner store."""
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hgimb.benchkit import expand, grid_from_mapping, run_id
from hgimb.benchkit.docs import (current_runs, load_averages, machine, machine_facts, mean_std, pr_auc_column,
                                 replace_section, run_recording_load, table)

ROOT = Path(__file__).resolve().parents[1]


def script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ formatting
def test_mean_std_formats_mean_and_sample_std():
    values = pd.Series([0.5, 0.6, np.nan, 0.7])
    assert mean_std(values) == "0.600 ± 0.100"  # NaN dropped, ddof=1
    assert mean_std(values, 2, 100) == "60.00 ± 10.00"
    assert mean_std(pd.Series([0.5]), 2, 100) == "50.00 ± 0.00"
    assert mean_std(pd.Series([0.5]), 1, 100, single_std=False) == "50.0"
    assert mean_std(pd.Series([0.5, 0.7]), 1, 100, single_std=False) == "60.0 ± 14.1"
    assert mean_std(pd.Series([np.nan])) == "-" and mean_std(pd.Series([], dtype=float), single_std=False) == "-"


def test_table_one_row_per_group_in_frame_order():
    frame = pd.DataFrame({"remedy": ["b", "a", "b"], "x": [1.0, 2.0, 3.0]})
    text = table(frame, [("remedy", "remedy")], [("x", lambda r: mean_std(r["x"], 1)), ("n", lambda r: str(len(r)))])
    assert text.splitlines() == ["| remedy | x | n |", "|---|---|---|", "| b | 2.0 ± 1.4 | 2 |", "| a | 2.0 ± 0.0 | 1 |"]


def test_pr_auc_column_positive_class_for_binary_runs():
    frame = pd.DataFrame({"num_classes": [2, 3], "test_pr_auc": [0.9, np.nan], "test_pr_auc_macro": [0.5, 0.4]})
    assert pr_auc_column(frame).tolist() == [0.9, 0.4]
    assert pr_auc_column(frame.drop(columns="test_pr_auc")).tolist() == [0.5, 0.4]


def test_machine_line_and_facts():
    assert re.fullmatch(r"\d+ CPU cores \(.+\), torch \S+, Python \d+\.\d+\.\d+", machine())
    facts = machine_facts()
    assert {"cpu", "cores", "threads", "torch", "pyg", "python", "cuda"} <= set(facts) and facts["cores"] >= 1


# ------------------------------------------------------------------ marked sections
def test_replace_section_creates_then_replaces_in_place(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    replace_section(doc, "speed", "| a |", heading="## Speed")  # no file yet
    assert doc.read_text() == "# Benchmarks\n\n## Speed\n\n<!-- table:speed -->\n| a |\n<!-- /table:speed -->\n"
    doc.write_text(doc.read_text() + "\nprose after\n")
    replace_section(doc, "speed", "| b \\1 |", heading="## Speed")  # backslashes are text, not group references
    content = doc.read_text()
    assert content.count("<!-- table:speed -->") == 1 and content.count("## Speed") == 1
    assert "| b \\1 |" in content and "| a |" not in content and content.endswith("\nprose after\n")
    replace_section(doc, "other", "x")  # a second section is appended, no heading
    assert doc.read_text().endswith("prose after\n\n<!-- table:other -->\nx\n<!-- /table:other -->\n")


# ------------------------------------------------------------------ store helpers
TINY = {"datasets": ["synthetic"], "dataset_options": {"num_movies": 200}, "epochs": 2, "hidden": 8, "models": ["mlp"]}


def test_current_runs_keeps_ok_rows_of_the_grid():
    configs = expand(grid_from_mapping({**TINY, "seeds": "0-1"}, "test"))
    old = configs[0].replace(epochs=3)
    frame = pd.DataFrame({"run_id": [run_id(configs[0]), run_id(configs[1]), run_id(old)],
                          "status": ["ok", "error", "ok"]})
    assert current_runs(frame, configs)["run_id"].tolist() == [run_id(configs[0])]


def test_run_recording_load_notes_the_load_of_runs_made(tmp_path):
    configs = expand(grid_from_mapping({**TINY, "seeds": "0-1"}, "test"))
    lines = []
    assert run_recording_load(configs, tmp_path, echo=lines.append) == 2
    assert run_recording_load(configs, tmp_path, echo=lines.append) == 0  # finished runs are skipped
    notes = [json.loads(line) for line in (tmp_path / "loadavg.jsonl").read_text().splitlines()]
    assert [n["run_id"] for n in notes] == [run_id(c) for c in configs] and all(len(n["loadavg"]) == 3 for n in notes)
    assert set(load_averages(tmp_path)) == {run_id(c) for c in configs}
    assert load_averages(tmp_path / "nothing") == {}


# ------------------------------------------------------------------ scripts/bench_minibatch.py
def test_minibatch_grid_and_table_from_the_runner_store():
    mb = script("bench_minibatch")
    configs = mb.configs(128, [0])
    assert len(configs) == 2 * 2 * 4
    rows = [{"run_id": run_id(c), "status": "ok", **c.to_dict(), "test_macro_f1": 0.5, "test_balanced_accuracy": 0.5,
             "test_minority_recall": 0.25, "seconds_per_epoch": 0.1, "best_epoch": 3, "epochs_run": 20}
            for c in configs]
    frame = pd.DataFrame(rows)
    loads = {rows[0]["run_id"]: 2.0, rows[-1]["run_id"]: 6.5}
    text = mb.render(frame, loads, fresh=4)
    body = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert [line.split(" | ")[2] for line in body[:4]] == [
        "full-batch", "mini-batch 128, fanout 10,10", "mini-batch 128, fanout -1,-1", "mini-batch 128, fanout 10,10, lr 0.002"]
    assert body[0].startswith("| official split | none | full-batch | 50.00 ± 0.00 |")
    assert body[-1].startswith("| imbalance ratio 10 | weighted |")
    assert "1-minute load average 2.0-6.5 during the runs" in text and "4 of the runs were made" in text
    assert "load average not recorded" in mb.render(frame, {}, fresh=0)


@pytest.mark.parametrize("name", ["bench_minibatch", "bench_sparse"])
def test_timing_scripts_report_only_without_a_store(name, tmp_path, monkeypatch, capsys):
    module = script(name)
    monkeypatch.setattr(module, "STORE", tmp_path / "none")
    for key in ("HGIMB_THREADS", "HGIMB_DATA"):  # main() sets them; restored after the test
        monkeypatch.setenv(key, str(tmp_path) if key == "HGIMB_DATA" else "1")
    args = ["--report-only", "--doc", str(tmp_path / "doc.md")]
    if name == "bench_sparse":
        args += ["--store", str(tmp_path / "none")]
    monkeypatch.setattr("sys.argv", [name, *args])
    assert module.main() == 1
    assert "no stored runs" in capsys.readouterr().err and not (tmp_path / "doc.md").exists()
