"""The measured remedy tables behind ``hgimb.diagnose``'s recommendation.

``remedies.json`` (beside this file) is extracted from BENCHMARKS.md's remedy tables — section 1
(every remedy, RGCN, Freebase ρ = 10 and ACM ρ = 20), section 2 (CGCNN, magnetic-tc > 600 K)
and section 3 (Cora, GCN/GAT/SAGE, step ρ = 10 and long-tailed ρ = 100) — by

    python -m hgimb.evidence BENCHMARKS.md            # rewrite hgimb/evidence/remedies.json
    python -m hgimb.evidence BENCHMARKS.md --check    # exit 1 if the file is out of date

Each table becomes one entry: dataset, model, kind of task, training class counts and their
ratio, the severity :func:`hgimb.diagnose.severity` gives that ratio, the metric (test macro-F1
for multi-class tables, positive-class PR-AUC for binary ones), the mean ± std per remedy, the
number of seeds and the command that produced the table. Nothing here is typed by hand: a test
holds the file to what this parser reads from BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from ..errors import HgimbError

EVIDENCE_FILE = Path(__file__).with_name("remedies.json")
COMMAND = "python -m hgimb.evidence BENCHMARKS.md"

_NUMBER = r"(-?\d+(?:\.\d+)?)"
_MEAN_STD = re.compile(_NUMBER + r"\s*±\s*" + _NUMBER)
_COUNTS = re.compile(r"class counts \[([\d,\s]+)\]")


def _block(text: str, name: str) -> Optional[str]:
    match = re.search(rf"<!-- table:{name} -->(.*?)<!-- /table:{name} -->", text, re.S)
    return match.group(1) if match else None


def _rows(lines: List[str], start: int) -> tuple[List[str], List[List[str]], int]:
    """The markdown table starting at or after line ``start``: (header cells, rows, next line)."""
    i = start
    while i < len(lines) and not lines[i].lstrip().startswith("|"):
        i += 1
    header = [c.strip() for c in lines[i].strip().strip("|").split("|")]
    rows = []
    i += 2  # header and separator
    while i < len(lines) and lines[i].lstrip().startswith("|"):
        rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
        i += 1
    return header, rows, i


# the protocol tables (section 3) name remedies as the papers do
_PAPER_NAMES = {"ce": "none", "cross-entropy": "none", "balanced softmax": "balanced-softmax", "bs": "balanced-softmax",
                "tam": "tam", "re-weight": "weighted", "graphens": "graphens", "graphens-ego": "graphens-ego"}


def _remedy(cell: str) -> str:
    """A table's remedy cell -> the remedy spec ``--remedy`` takes (``focal``, ``BAT (CE)`` -> ``bat``,
    ``BS + TAM`` -> ``tam``: TAM's margins sit on its base loss, balanced softmax by default)."""
    # "GraphENS (ego networks, CE)" / "GraphENS (ego) + TAM" name graphens-ego: keep that before
    # the notes in parentheses go
    text = re.sub(r"GraphENS \(ego[^)]*\)", "graphens-ego", cell.strip("` "))
    text = re.sub(r"\(.*?\)", "", text).strip()  # drop notes such as "(CE base)"
    if "+" in text or text.lower() in _PAPER_NAMES:
        parts = [_PAPER_NAMES.get(p.strip().lower(), p.strip().lower()) for p in text.split("+")]
        if "tam" in parts:  # "BS + TAM" is tam on its default base; tam and a loss do not compose
            parts = [p for p in parts if p != "balanced-softmax"]
        return "+".join(p for p in parts if p != "none" or len(parts) == 1)
    return text.split(" ")[0].lower()  # "BAT (CE)" -> "bat": remedy names are lower case


def _command(block: str) -> str:
    match = re.search(r"_(?:Measured with|Written by) `([^`]+)`", block)
    return match.group(1) if match else ""


def _entry(dataset: str, model: str, kind: str, counts: List[int], ratio_setting: Any, metric: str,
           scores: Dict[str, List[float]], n: int, section: str, command: str, note: str = "") -> Dict[str, Any]:
    from ..diagnose import severity

    ratio = max(counts) / min(counts) if counts and min(counts) > 0 else None
    entry = {"id": f"{dataset}-{model}-{ratio_setting}".lower().replace(" ", ""), "section": section,
             "dataset": dataset, "model": model, "kind": kind, "binary": len(counts) == 2,
             "setting": ratio_setting, "train_class_counts": counts,
             "imbalance_ratio": round(ratio, 2) if ratio else None, "severity": severity(ratio), "metric": metric,
             "n": n, "command": command, "scores": scores}
    if note:
        entry["note"] = note
    return entry


def _titled_tables(text: str, name: str, title: str) -> Iterator[tuple]:
    """Per line of the ``name`` block that matches ``title`` (a bold table title with ``train
    class counts [...]``) and the table under it: (title match, title line, class counts,
    header cells, rows, the block's command)."""
    block = _block(text, name)
    if block is None:
        return
    command = _command(block)
    lines = block.splitlines()
    for i, line in enumerate(lines):
        match = re.match(title, line.strip())
        if not match:
            continue
        counts = [int(c) for c in _COUNTS.search(line).group(1).split(",")]
        header, rows, _ = _rows(lines, i + 1)
        yield match, line, counts, header, rows, command


def remedies_tables(text: str) -> List[Dict[str, Any]]:
    """Section 1: ``**dataset, MODEL, imbalance ratio R** (train class counts [...])`` tables."""
    out = []
    title = r"\*\*(\w[\w-]*), (\w+), imbalance ratio " + _NUMBER + r"\*\*"
    for match, _, counts, header, rows, command in _titled_tables(text, "remedies", title):
        col, n_col = header.index("macro-F1"), header.index("n")
        scores = {}
        n = 0
        for row in rows:
            mean, std = _MEAN_STD.search(row[col]).groups()
            scores[_remedy(row[0])] = [float(mean), float(std)]
            n = max(n, int(row[n_col]))
        out.append(_entry(match.group(1), match.group(2).lower(), "node", counts, f"long-tail {match.group(3)}",
                          "macro_f1", scores, n, "1", command))
    return out


def crystal_tables(text: str) -> List[Dict[str, Any]]:
    """Section 2: the CGCNN table (binary, positive-class PR-AUC)."""
    block = _block(text, "crystal")
    if block is None:
        return []
    heading = re.search(r"## 2\. Crystal graphs: ([\w-]+), Tc > (\d+) K \(([\d,]+) positives of ([\d,]+)", text)
    positives, total = (int(heading.group(i).replace(",", "")) for i in (3, 4))
    header, rows, _ = _rows(block.splitlines(), 0)
    col, n_col = header.index("PR-AUC"), header.index("n")
    scores = {_remedy(r[0]): [float(v) for v in _MEAN_STD.search(r[col]).groups()] for r in rows}
    n = max(int(r[n_col]) for r in rows)
    return [_entry(heading.group(1), "cgcnn", "graph", [total - positives, positives], f"Tc>{heading.group(2)}",
                   "pr_auc", scores, n, "2", _command(block))]


def cora_tables(text: str) -> List[Dict[str, Any]]:
    """Section 3: Cora tables of the published protocols, one entry per model column (cells:
    balanced acc. / macro-F1). The backbone variants of a protocol (titles without "protocol")
    are left out: one entry per setting."""
    out = []
    title = r"\*\*(Step imbalance|Long-tailed),? ρ = (\d+)"
    for match, line, counts, header, rows, command in _titled_tables(text, "lt", title):
        if "protocol" not in line.split("**")[1]:
            continue
        setting = ("step " if match.group(1).startswith("Step") else "long-tail ") + match.group(2)
        n_match = re.search(r"over (\d+) seeds", line)
        for col, model in enumerate(header):
            if col == 0 or model.lower().startswith("published"):
                continue
            model = model.split()[0]  # "gcn bAcc / F1 (n) · p vs CE" -> "gcn"
            scores = {}
            runs = []
            for row in rows:
                values = _MEAN_STD.findall(row[col])
                if len(values) == 2:  # balanced accuracy / macro-F1
                    scores[_remedy(row[0])] = [float(values[1][0]), float(values[1][1])]
                    count = re.search(r"\((\d+)\)", row[col])  # "(n)" after the cell's values
                    if count:
                        runs.append(int(count.group(1)))
            n = int(n_match.group(1)) if n_match else (min(runs) if runs else 0)
            out.append(_entry("cora", model.lower(), "node", counts, setting, "macro_f1", scores, n, "3", command))
    return out


def extract(text: str) -> Dict[str, Any]:
    tables = remedies_tables(text) + crystal_tables(text) + cora_tables(text)
    if not tables:
        raise HgimbError("no remedy tables found (expected <!-- table:remedies -->, table:crystal, table:lt blocks)")
    return {"source": "BENCHMARKS.md", "extracted_by": COMMAND,
            "metric_note": "test split; macro-F1 in points for multi-class tables, positive-class PR-AUC for binary ones",
            "tables": tables}


def load() -> Dict[str, Any]:
    if not EVIDENCE_FILE.is_file():
        raise HgimbError(f"{EVIDENCE_FILE} is missing; regenerate it with {COMMAND}")
    return json.loads(EVIDENCE_FILE.read_text())


def dumps(evidence: Dict[str, Any]) -> str:
    return json.dumps(evidence, indent=1, ensure_ascii=False) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    from ..cli import guard

    def run(argv):
        parser = argparse.ArgumentParser(prog="python -m hgimb.evidence", description=__doc__.split("\n")[0])
        parser.add_argument("benchmarks", nargs="?", default="BENCHMARKS.md")
        parser.add_argument("--check", action="store_true", help="exit 1 if remedies.json differs from the tables")
        args = parser.parse_args(argv)
        path = Path(args.benchmarks)
        if not path.is_file():
            raise HgimbError(f"{path} not found")
        text = dumps(extract(path.read_text()))
        if args.check:
            same = EVIDENCE_FILE.is_file() and EVIDENCE_FILE.read_text() == text
            print(f"{EVIDENCE_FILE}: {'up to date' if same else 'out of date; run ' + COMMAND}")
            return 0 if same else 1
        EVIDENCE_FILE.write_text(text)
        print(f"wrote {EVIDENCE_FILE} ({len(json.loads(text)['tables'])} tables)")
        return 0

    return guard(run)(argv)
