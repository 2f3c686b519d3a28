"""A tiny valid HGB folder (2 node types, 2 link types, 2 classes, info.dat in the text layout)
for bad-input tests: each part can be replaced or edited through a function of its lines."""
from __future__ import annotations

from pathlib import Path

NODES = [f"{i}\tp{i}\t0\t{i % 3}.0,{(i * 7) % 5}.0" for i in range(12)] + [f"{12 + j}\ta{j}\t1\t" for j in range(4)]
LINKS = [row for i in range(12) for row in (f"{i}\t{12 + i % 4}\t0\t1.0", f"{12 + i % 4}\t{i}\t1\t1.0")]
LABELS = [f"{i}\tp{i}\t0\t{i % 2}" for i in range(8)]
TEST = [f"{i}\tp{i}\t0\t{i % 2}" for i in range(8, 12)]
INFO = ("node.dat\nTYPE\tMEANING\n0\tpaper\n1\tauthor\n\nlink.dat\nLINK\tSTART\tEND\tMEANING\n"
        "0\t0\t1\tpaper-author\n1\t1\t0\tauthor-paper\n\nlabel.dat\nTYPE\tCLASS\tMEANING\n0\t0\tx\n0\t1\ty\n")


def write_case(root: Path, node=None, link=None, label=None, test=lambda rows: rows) -> Path:
    """``node``/``link``/``label``/``test``: functions of the default lines (``test=None``: no
    label.dat.test)."""
    root.mkdir(parents=True, exist_ok=True)
    parts = {"node.dat": (node, NODES), "link.dat": (link, LINKS), "label.dat": (label, LABELS),
             "label.dat.test": (test, TEST)}
    for name, (edit, rows) in parts.items():
        if name == "label.dat.test" and edit is None:
            continue
        lines = (edit or (lambda r: r))(list(rows))
        (root / name).write_text("".join(line + "\n" for line in lines))
    (root / "info.dat").write_text(INFO)
    return root
