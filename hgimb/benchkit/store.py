"""The results store: ``<out>/results.jsonl``, one JSON object per finished run.

Only the parent process writes (single writer). Each row is one ``os.write`` of a complete,
newline-terminated line on an ``O_APPEND`` descriptor followed by ``fsync``, with SIGINT held
back for the duration, so Ctrl-C never leaves half a row. A hard kill (power loss, SIGKILL in the
middle of a write) can still truncate the last line: readers ignore an unterminated last line and
the next writer cuts it off before appending. Later rows for the same run id supersede earlier ones
(an error retried with ``--retry-failed``).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy as np

from ..errors import HgimbError
from .grid import ROW_CONFIG_CORE, config_id

STORE_NAME = "results.jsonl"


def store_path(path: str | os.PathLike) -> Path:
    """``<dir>/results.jsonl`` for a bench directory, or the file itself."""
    path = Path(path)
    return path / STORE_NAME if path.is_dir() or path.suffix != ".jsonl" else path


def check_bench_dir(path: str | os.PathLike) -> Path:
    """Raise HgimbError unless ``path`` can be a bench directory (absent, or a directory)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HgimbError(f"--out {path} is an existing file, not a bench directory; choose another --out")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise HgimbError(f"--out {path}: {ancestor} is a file, so no bench directory can be made below it")
    return path


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def read_rows(path: str | os.PathLike) -> List[Dict[str, Any]]:
    """Every complete row, in file order. An unterminated last line (hard kill) is ignored; a
    malformed complete line is an error naming the file and line."""
    path = store_path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows = []
    # lines[-1] is b"" when the file ends with a newline, else the truncated tail: skip it.
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for binary data
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
            raise HgimbError(f"{path}:{number}: not a JSON row ({reason}); is this a results.jsonl written by "
                             "hgimb.bench? Delete that line to rerun the run") from None
        if not isinstance(row, dict) or "run_id" not in row:
            raise HgimbError(f"{path}:{number}: not a results row (no run_id); delete that line")
        if all(key in row for key in ROW_CONFIG_CORE):
            # the id under today's RunConfig: a row written before a field existed matches the
            # config that sets that field to its default
            row["run_id"] = config_id(row)
        rows.append(row)
    return rows


def latest_rows(rows: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """run id -> its last row."""
    out: Dict[str, Dict[str, Any]] = {}
    for row in rows:
        out[row["run_id"]] = row
    return out


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Defer SIGINT/SIGTERM until the block is done (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: List[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, lambda number, frame: pending.append(number))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            signal.raise_signal(pending[0])  # delivered now, to the restored handler


class ResultStore:
    """Append-only writer for one store file (the parent process holds the only one)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_handle = None

    def lock(self) -> None:
        """Refuse a second bench process writing the same store (POSIX advisory lock)."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory lock, single-user use assumed
            return
        handle = open(self.path.parent / ".bench.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise HgimbError(f"another bench process is writing {self.path}; wait for it or use another --out") from None
        self._lock_handle = handle

    def unlock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def repair(self) -> int:
        """Cut off an unterminated last line (from a hard kill); returns the bytes removed."""
        if not self.path.is_file():
            return 0
        size = self.path.stat().st_size
        if size == 0:
            return 0
        with open(self.path, "rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return 0
            # find the last newline by scanning back in blocks
            position, block = size, 1 << 16
            keep = 0
            while position > 0:
                start = max(0, position - block)
                handle.seek(start)
                chunk = handle.read(position - start)
                index = chunk.rfind(b"\n")
                if index >= 0:
                    keep = start + index + 1
                    break
                position = start
            handle.truncate(keep)
            return size - keep

    def append(self, row: Dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
        line = (json.dumps(clean, default=_json_default) + "\n").encode()
        with _sigint_held():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(line)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)

