"""The worker side of a grid: one run (:func:`execute`), the same function for every backend
(:mod:`hgimb.benchkit.local_backend`, :mod:`hgimb.benchkit.ray_backend`). It calls
``run_experiment`` (the code path of ``hgimb.train``) with this process's output sent to the
run's log, and returns the run's row; a failed run is a row too, never an exception.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

# Imported at module level on purpose: the local backend's forkserver preloads this module, so
# that workers start with torch, PyG and every registry already imported.
import torch

from .. import data as _data  # noqa: F401  (registers datasets)
from .. import imbalance as _imbalance  # noqa: F401  (registers remedies)
from .. import models as _models  # noqa: F401  (registers models)
from ..config import RunConfig
from ..engine import run_experiment
from ..metrics import HEADLINE
from .crossfit import crossfit_val_metrics

METRIC_KEYS = tuple(HEADLINE) + ("minority_recall", "minority_precision", "minority_f1", "pr_auc", "roc_auc")
RUN_KEYS = ("num_classes", "train_class_counts", "best_epoch", "epochs_run", "seconds_per_epoch",
            "train_seconds", "folds", "peak_cuda_mb")


def flat_metrics(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """Headline val/test metrics as ``val_macro_f1``, ... plus the run facts (best epoch, ...).
    K-fold summaries contribute their means."""
    row: Dict[str, Any] = {}
    for key in RUN_KEYS:
        if key in metrics:
            row[key] = metrics[key]
    for part in ("val", "test"):
        report = metrics.get(part) or {}
        for key in METRIC_KEYS:
            if key in report:
                value = report[key]
                row[f"{part}_{key}"] = value.get("mean") if isinstance(value, dict) else value
    return row


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 500 else line[:497] + "..."


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[Any]:
    """Send this process's stdout/stderr (Python objects and file descriptors 1 and 2, so that
    native libraries' output is caught too) to ``path`` for the duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as log:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        saved: List[int] = []
        try:
            saved = [os.dup(1), os.dup(2)]
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        except OSError:  # no descriptors 1/2 (a daemon): the Python-level redirect still applies
            saved = []
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield log
        finally:
            log.flush()
            if saved:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                for fd in saved:
                    os.close(fd)


def execute(config: Dict[str, Any], key: str, log_path: str, save_dir: Optional[str] = None) -> Dict[str, Any]:
    """One run (worker side). Never raises for a failed run: returns ``status: error`` with the
    error's type and first line; the traceback goes to the log."""
    start = time.perf_counter()
    row: Dict[str, Any] = {"status": "ok"}
    with _output_to(Path(log_path)):
        print(f"=== run {key} started {now()} (pid {os.getpid()}, {torch.get_num_threads()} torch threads)")
        print(json.dumps(config, sort_keys=True, default=str))
        try:
            cfg = RunConfig(**config)
            if save_dir:
                cfg = cfg.replace(out=save_dir)
            result = run_experiment(cfg, write=bool(save_dir))
            row.update(flat_metrics(result.metrics))
            # post-hoc remedies: validation scores out of fold, for selection (crossfit.py)
            row.update(crossfit_val_metrics(result))
            print(f"=== run {key} ok: test macro_f1={row.get('test_macro_f1')}")
        except Exception as exc:  # recorded, not raised: one failing run must not stop the grid
            traceback.print_exc()
            row.update(status="error", error_type=type(exc).__name__, error=one_line(exc))
            print(f"=== run {key} failed: {type(exc).__name__}: {one_line(exc)}")
    row["wall_seconds"] = round(time.perf_counter() - start, 3)
    return row


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def error_row(exc: BaseException, message: Optional[str] = None) -> Dict[str, Any]:
    return {"status": "error", "error_type": type(exc).__name__, "error": message or one_line(exc)}
