"""Where a run writes: checked before any work, replaced atomically, never at a user's expense.

A run directory carries a marker file (:data:`RUN_MARKER`). hgimb replaces an existing path only
when it is a directory hgimb wrote (the marker, or a directory from before the marker existed that
holds hgimb's ``config.yaml`` and ``metrics.json`` and nothing foreign) or an empty directory.
Anything else (a regular file, a directory of the user's files, a symlink) is refused with one
line, before training starts; so is a location that cannot be written.

The new directory is built under a temporary name beside the target and renamed into place, so a
failed run leaves nothing half-written and the previous run directory stays until the new one is
complete.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import HgimbError

RUN_MARKER = ".hgimb-run"
# Files an hgimb run directory (or a fold summary) holds; a marker-less directory made only of
# these is an hgimb run directory written before the marker existed.
_RUN_FILES = {"config.yaml", "metrics.json", "history.csv", "predictions.csv", "model.pt", "plots"}


def _absolute(out: Path) -> Path:
    """``out`` made absolute with ``..`` folded (``dir/..`` names the directory itself); symlinks
    are kept so that a link is seen as a link."""
    return Path(os.path.normpath(os.path.abspath(os.fspath(out))))


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    if (path / RUN_MARKER).is_file():
        return True
    names = {p.name for p in path.iterdir()}
    folds = {n for n in names if n.startswith("fold") and n[4:].isdigit()}
    return {"config.yaml", "metrics.json"} <= names and names - folds <= _RUN_FILES


def check_out_dir(out: Path) -> Path:
    """Raise HgimbError unless a run may be written to ``out``; returns the absolute path.

    Nothing is left behind: the nearest existing ancestor must be a directory in which a probe
    directory can be made (and is removed again)."""
    target = _absolute(Path(out))
    if target.parent == target:
        raise HgimbError(f"--out {out}: a filesystem root cannot be a run directory; name a directory inside it")
    if target.is_symlink():
        raise HgimbError(f"--out {out} is a symbolic link; hgimb does not replace it. Choose another --out")
    if target.exists():
        if not target.is_dir():
            raise HgimbError(f"--out {out} is an existing file, not an hgimb run directory; hgimb will not replace it. "
                             "Choose another --out")
        if any(target.iterdir()) and not is_run_dir(target):
            raise HgimbError(f"--out {out} is a directory that hgimb did not write (no {RUN_MARKER} marker); "
                             "hgimb replaces only its own run directories. Choose another --out")
    ancestor = target.parent
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link on the way
            raise HgimbError(f"--out {out}: {ancestor} is a broken symbolic link")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise HgimbError(f"--out {out}: {ancestor} is a file, so no directory can be made below it")
    try:  # a real probe: permission bits say nothing for root, /proc or a read-only mount
        os.rmdir(tempfile.mkdtemp(prefix=".hgimb-probe-", dir=ancestor))
    except OSError as exc:
        raise HgimbError(f"--out {out}: cannot write in {ancestor} ({exc.strerror}); choose a writable location") from None
    return target


def atomic_dir(out: Path, fill: Callable[[Path], None]) -> Path:
    """Build the run directory under a temporary name beside ``out``, then rename it into place.

    ``out`` is checked first (:func:`check_out_dir`); an existing hgimb run directory there is
    replaced only once the new one is complete."""
    target = check_out_dir(out)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HgimbError(f"--out {out}: cannot create {target.parent}: {exc.strerror}") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    old = None
    try:
        fill(tmp)
        (tmp / RUN_MARKER).write_text("written by hgimb; this directory is replaced when a run writes here again\n")
        if target.exists():
            check_out_dir(target)  # it may have changed while the run trained
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / target.name).exists() and not target.exists():
            os.replace(old / target.name, target)  # put the previous run back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target
