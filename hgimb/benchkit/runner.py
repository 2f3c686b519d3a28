"""Running a grid: every run is an ordinary ``run_experiment`` call (the code path of
``hgimb.train``, :func:`hgimb.benchkit.worker.execute`), with its output in
``<out>/logs/<run-id>.log`` and its row in ``<out>/results.jsonl`` (written by this, the
parent, process only).

Resume: runs whose latest row is ``ok`` are skipped; ``error`` rows are skipped too unless
``retry_failed``. A failing run is recorded with its error and the grid goes on. Ctrl-C (or
SIGTERM) stops the workers; every row already written is complete, so rerunning the same command
continues where it stopped.

Where runs execute is a backend (:data:`BACKENDS`): ``local`` (this process, or a pool of worker
processes: :mod:`hgimb.benchkit.local_backend`) or ``ray`` (one Ray task per run:
:mod:`hgimb.benchkit.ray_backend`). A backend is a module with ``check(address)``, which raises
an ``HgimbError`` for settings it cannot run before anything is touched, and
``rows(runs, workers, address)``, a generator of ``(run, row)`` pairs in order of completion
whose ``close()`` stops what is still running.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from ..config import RunConfig
from ..errors import HgimbError
from . import local_backend, ray_backend
from .grid import run_id, run_name
from .store import STORE_NAME, ResultStore, latest_rows, read_rows
from .worker import now

BACKENDS = {"local": local_backend, "ray": ray_backend}


# ------------------------------------------------------------------------------ planning
@dataclass
class PlannedRun:
    run_id: str
    name: str
    config: RunConfig
    state: str  # todo | done | failed (an error row exists; rerun with retry_failed)
    log: Path
    save_dir: Optional[Path] = None

    def args(self) -> tuple:
        return (self.config.to_dict(), self.run_id, str(self.log),
                str(self.save_dir) if self.save_dir else None)


def plan(configs: List[RunConfig], out: str | Path, retry_failed: bool = False,
         save_runs: bool = False) -> List[PlannedRun]:
    """Each run with its id, name and state against the store in ``out``."""
    out = Path(out)
    recorded = latest_rows(read_rows(out / STORE_NAME))
    names = [run_name(cfg) for cfg in configs]
    counts = Counter(names)
    planned = []
    for cfg, name in zip(configs, names):
        key = run_id(cfg)
        if counts[name] > 1:  # another axis varies: keep directory names unique
            name = f"{name}-{key}"
        status = recorded.get(key, {}).get("status")
        state = "done" if status == "ok" else "failed" if status == "error" and not retry_failed else "todo"
        planned.append(PlannedRun(key, name, cfg, state, out / "logs" / f"{key}.log",
                                  out / "runs" / name if save_runs else None))
    return planned


# ------------------------------------------------------------------------------ the grid
@dataclass
class GridOutcome:
    out: Path
    total: int
    skipped_done: int = 0
    skipped_failed: int = 0
    ran: int = 0
    ok: int = 0
    failed: int = 0
    interrupted: bool = False
    errors: List[Dict[str, Any]] = field(default_factory=list)  # rows of runs that failed this time
    failed_total: int = 0  # runs of the grid whose latest row is an error

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else 1 if self.failed_total else 0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(number, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def record_row(item: PlannedRun, result: Dict[str, Any], out: Path) -> Dict[str, Any]:
    """The store row: id, name, status, every config field, metrics, wall time, log."""
    config = item.config.to_dict()
    config["out"] = str(item.save_dir) if item.save_dir else None
    row: Dict[str, Any] = {"run_id": item.run_id, "name": item.name, "status": result.get("status", "error")}
    if row["status"] != "ok":
        row["error_type"] = result.get("error_type", "Error")
        row["error"] = result.get("error", "")
    row.update(config)
    row.update({k: v for k, v in result.items() if k not in ("status", "error", "error_type")})
    row["log"] = os.path.relpath(item.log, out)
    row["finished_at"] = now()
    return row


def run_grid(configs: List[RunConfig], out: str | Path, *, workers: Optional[int] = None,
             retry_failed: bool = False, save_runs: bool = False, quiet: bool = False,
             backend: str = "local", address: Optional[str] = None,
             echo: Callable[[str], None] = print) -> GridOutcome:
    """Run every config not yet recorded ok in ``<out>/results.jsonl``; returns the tally.
    ``backend``: a name in :data:`BACKENDS`; ``workers``: runs at a time (local: processes,
    default one per core; ray: tasks submitted at once, default all); ``address``: the Ray
    cluster (:mod:`hgimb.benchkit.ray_backend`)."""
    if backend not in BACKENDS:
        raise HgimbError(f"--backend must be {' or '.join(repr(name) for name in BACKENDS)}, got '{backend}'")
    BACKENDS[backend].check(address)
    if workers is not None and workers < 1:
        raise HgimbError(f"--workers must be >= 1, got {workers}")
    out = Path(out)
    store = ResultStore(out / STORE_NAME)
    store.lock()
    try:
        store.repair()
        planned = plan(configs, out, retry_failed=retry_failed, save_runs=save_runs)
        todo = [p for p in planned if p.state == "todo"]
        outcome = GridOutcome(out, len(planned), skipped_done=sum(p.state == "done" for p in planned),
                              skipped_failed=sum(p.state == "failed" for p in planned))
        rows = BACKENDS[backend].rows(todo, workers, address)
        bar = _progress(len(todo), quiet)
        try:
            with _sigterm_as_interrupt():
                for item, result in rows:
                    row = record_row(item, result, out)
                    store.append(row)
                    outcome.ran += 1
                    if row["status"] == "ok":
                        outcome.ok += 1
                    else:
                        outcome.failed += 1
                        outcome.errors.append(row)
                    _report_progress(bar, outcome, row, len(todo), quiet, echo)
        except KeyboardInterrupt:
            outcome.interrupted = True
        finally:
            rows.close()  # stops worker processes when interrupted
            if bar is not None:
                bar.close()
        latest = latest_rows(read_rows(store.path))
        outcome.failed_total = sum(latest.get(p.run_id, {}).get("status") == "error" for p in planned)
        return outcome
    finally:
        store.unlock()


def _progress(total: int, quiet: bool):
    if quiet or total == 0 or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="run", desc="bench", dynamic_ncols=True)


def _report_progress(bar, outcome: GridOutcome, row: Dict[str, Any], total: int, quiet: bool, echo) -> None:
    if row["status"] == "ok":
        score = row.get("test_macro_f1")
        line = (f"ok    {row['name']}  test macro_f1={score:.4f}" if score is not None else f"ok    {row['name']}")
    else:
        line = f"error {row['name']}  {row['error_type']}: {row['error']}  (log: {row['log']})"
    if bar is not None:
        bar.update(1)
        bar.set_postfix(ok=outcome.ok, failed=outcome.failed)
        if row["status"] != "ok":
            bar.write(line)
    elif not quiet:
        echo(f"[{outcome.ran}/{total}] {line} ({row.get('wall_seconds', 0):.1f} s)")
