"""Helpers for the scripts that write measured tables into README.md / BENCHMARKS.md.

A script under ``scripts/`` is a grid (which runs) and a renderer (which table); what they share
lives here::

    from hgimb.benchkit.docs import machine, mean_std, replace_section, table
    text = table(frame, [("remedy", "remedy")], [("macro-F1", lambda r: mean_std(r["test_macro_f1"], 2, 100))])
    replace_section(Path("BENCHMARKS.md"), "remedies", text + f"\\n\\n_Measured on {machine()}._")

* :func:`mean_std` -- ``"61.80 ± 0.29"``: mean ± sample std (ddof=1) of a column;
* :func:`table` -- a markdown table, one row per group of key columns;
* :func:`replace_section` -- put a table between ``<!-- table:NAME -->`` markers of a document;
* :func:`machine` / :func:`machine_facts` -- the machine a table was measured on;
* :func:`pr_auc_column` -- positive-class PR-AUC for binary runs, macro PR-AUC otherwise;
* :func:`current_runs` -- the finished store rows of a grid as it is now;
* :func:`run_recording_load` / :func:`load_averages` / :func:`load_range` -- run configs one at a
  time through the bench runner, noting the machine's load average after each (a run's store row
  does not hold it), and the range of those loads for a table's note.

Only pandas and the standard library at import time; torch (and PyG) are imported by
:func:`machine_facts` when called.
"""
from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import pandas as pd

from .grid import run_id

LOAD_FILE = "loadavg.jsonl"  # beside results.jsonl: {"run_id", "loadavg"} per run made by run_recording_load


def mean_std(values: pd.Series, digits: int = 3, scale: float = 1.0, single_std: bool = True) -> str:
    """``"mean ± std"`` of the non-missing ``values`` times ``scale``, ``digits`` decimals; std is
    the sample standard deviation (ddof=1). One value: ``"x ± 0.000"``, or ``"x"`` alone when
    ``single_std`` is false. No value: ``"-"``."""
    values = values.dropna().astype(float) * scale
    if values.empty:
        return "-"
    if len(values) == 1 and not single_std:
        return f"{values.mean():.{digits}f}"
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {std:.{digits}f}"


def machine_facts() -> Dict[str, object]:
    """The machine: CPU model (``/proc/cpuinfo``, else the platform's name), core count,
    architecture, torch threads now, torch / PyG / Python versions, the CUDA device (or None)."""
    import torch
    import torch_geometric

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "arch": platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "pyg": torch_geometric.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def machine() -> str:
    """``"2 CPU cores (x86_64), torch 2.13.0+cpu, Python 3.11.7"`` -- as the tables' notes say it."""
    import torch

    return (f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def pr_auc_column(frame: pd.DataFrame) -> pd.Series:
    """Test PR-AUC per run: the positive class's for binary runs, the macro average otherwise."""
    binary = frame["num_classes"] == 2
    return frame["test_pr_auc"].where(binary, frame["test_pr_auc_macro"]) if "test_pr_auc" in frame else frame["test_pr_auc_macro"]


def table(frame: pd.DataFrame, keys: Sequence[Tuple[str, str]],
          columns: Sequence[Tuple[str, Callable[[pd.DataFrame], str]]]) -> str:
    """Markdown: one row per group of ``keys`` (``[(title, column)]``, in the frame's order);
    ``columns`` = ``[(title, function(rows of the group) -> cell text)]``."""
    lines = ["| " + " | ".join([k[0] for k in keys] + [c[0] for c in columns]) + " |",
             "|" + "---|" * (len(keys) + len(columns))]
    for group, rows in frame.groupby([k[1] for k in keys], sort=False):
        group = group if isinstance(group, tuple) else (group,)
        cells = [str(g) for g in group] + [fn(rows) for _, fn in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_section(doc: Path, name: str, text: str, heading: str = "") -> None:
    """Put ``text`` between the ``name`` markers of ``doc``; the first time (no markers yet) the
    markers are appended at the end, after ``heading`` when one is given. A missing ``doc`` starts
    as ``# Benchmarks``."""
    doc = Path(doc)
    content = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start, end = f"<!-- table:{name} -->", f"<!-- /table:{name} -->"
    block = f"{start}\n{text}\n{end}"
    if start in content:
        content = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, content, flags=re.S)
    else:
        intro = f"{heading.strip()}\n\n" if heading.strip() else ""
        content = content.rstrip("\n") + f"\n\n{intro}{block}\n"
    doc.write_text(content)


def current_runs(frame: pd.DataFrame, configs: Iterable) -> pd.DataFrame:
    """The rows of ``frame`` (a results store) that finished ok and belong to ``configs``: rows of
    settings a grid no longer has must not mix into its table."""
    wanted = {run_id(c) for c in configs}
    return frame[(frame["status"] == "ok") & frame["run_id"].isin(wanted)]


def run_recording_load(configs: List, out: str | Path, echo: Callable[[str], None] = print) -> int:
    """Run ``configs`` through the bench runner one at a time in this process (finished runs are
    skipped) and append the 1/5/15-minute load average after each run made to ``<out>/loadavg.jsonl``;
    returns how many runs were made. Stops after an interrupted run (Ctrl-C). The runner's store
    row records what a run computes, not the load the machine was under, which the timing tables
    report beside seconds per epoch."""
    from .runner import run_grid

    out = Path(out)
    made = 0
    for cfg in configs:
        outcome = run_grid([cfg], out, workers=1, quiet=False, echo=echo)
        if outcome.ran:
            made += outcome.ran
            with (out / LOAD_FILE).open("a") as fh:
                fh.write(json.dumps({"run_id": run_id(cfg), "loadavg": list(os.getloadavg())}) + "\n")
        if outcome.interrupted:
            break
    return made


def load_averages(out: str | Path) -> Dict[str, float]:
    """run id -> 1-minute load average after the run (the latest note per run), from
    ``<out>/loadavg.jsonl``; empty when there is none."""
    path = Path(out) / LOAD_FILE
    if not path.is_file():
        return {}
    notes = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {n["run_id"]: float(n["loadavg"][0]) for n in notes}


def load_range(run_ids: pd.Series, loads: Dict[str, float]) -> str:
    """``"2.0-6.7"``: lowest and highest noted 1-minute load average of ``run_ids`` (``loads``
    from :func:`load_averages`); ``"not recorded"`` when none of them has a note."""
    values = run_ids.map(loads).dropna()
    return f"{values.min():.1f}-{values.max():.1f}" if not values.empty else "not recorded"
