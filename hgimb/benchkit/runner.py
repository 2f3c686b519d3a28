"""Running a grid: every run is an ordinary ``run_experiment`` call (the code path of
``hgimb.train``), in worker processes, with its output in ``<out>/logs/<run-id>.log`` and its row
in ``<out>/results.jsonl`` (written by this, the parent, process only).

Resume: runs whose latest row is ``ok`` are skipped; ``error`` rows are skipped too unless
``retry_failed``. A failing run is recorded with its error and the grid goes on. Ctrl-C (or
SIGTERM) stops the workers; every row already written is complete, so rerunning the same command
continues where it stopped.

``workers == 1`` runs in this process (easiest to debug; a crash in native code ends the grid);
more workers run in a ``ProcessPoolExecutor`` over a ``forkserver`` (``spawn`` where there is
none) context whose server has already imported torch and hgimb, each worker with
``cores // workers`` torch threads so that the machine is not oversubscribed.

``backend="ray"`` sends each run to a Ray cluster as one remote task (``address``: ``auto``
for a running cluster, ``ray://host:port`` for Ray client, none to start a local instance).
The task calls the same :func:`execute` with its log and run directory in a temporary folder
on the node that ran it, and returns the row, the log text and (``save_runs``) the run
directory as a tar archive; this process appends the row to the store and writes the log and
run directory where the local backend would, so resume and crash records are the same and no
shared filesystem is needed. Each task asks Ray for ``$HGIMB_THREADS`` CPUs (default 1) and
is not retried by Ray (a run that kills its worker is recorded as an error, as locally).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

# Imported at module level on purpose: the forkserver preloads this module, so that workers
# start with torch, PyG and every registry already imported.
import torch  # noqa: F401

from .. import data as _data  # noqa: F401  (registers datasets)
from .. import imbalance as _imbalance  # noqa: F401  (registers remedies)
from .. import models as _models  # noqa: F401  (registers models)
from ..config import RunConfig
from ..engine import run_experiment
from ..errors import HgimbError
from ..metrics import HEADLINE
from .crossfit import crossfit_val_metrics
from .grid import run_id, run_name
from .store import STORE_NAME, ResultStore, latest_rows, read_rows

METRIC_KEYS = tuple(HEADLINE) + ("minority_recall", "minority_precision", "minority_f1", "pr_auc", "roc_auc")
RUN_KEYS = ("num_classes", "train_class_counts", "best_epoch", "epochs_run", "seconds_per_epoch",
            "train_seconds", "folds")
RAY_HINT = "pip install 'hgimb[ray]'"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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


# ------------------------------------------------------------------------ the worker side
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
        print(f"=== run {key} started {_now()} (pid {os.getpid()}, {torch.get_num_threads()} torch threads)")
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


def _init_worker(threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops workers
    torch.set_num_threads(threads)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _error_row(exc: BaseException, message: Optional[str] = None) -> Dict[str, Any]:
    return {"status": "error", "error_type": type(exc).__name__, "error": message or one_line(exc)}


# ------------------------------------------------------------------------------ backends
Rows = Iterator[Tuple[PlannedRun, Dict[str, Any]]]


def _inline_rows(items: List[PlannedRun], threads: int) -> Rows:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for item in items:
            yield item, execute(*item.args())
    finally:
        torch.set_num_threads(previous)


def _mp_context():
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        context = mp.get_context("forkserver")
        # Workers fork from a server that imported torch + hgimb once (a spawn per worker would
        # pay the multi-second import each time). No-op if the server already runs.
        context.set_forkserver_preload([__name__])
        return context
    return mp.get_context("spawn")


def _stop_pool(pool, graceful: bool) -> None:
    if graceful:
        pool.shutdown(wait=True)
        return
    # no public way to stop running workers before Python 3.14 (terminate_workers)
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


_DIED = ("a worker process died (killed, out of memory, or a crash in native code) while this run "
         "or one beside it was running; rerun with --retry-failed")


def _future_row(future) -> Dict[str, Any]:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool as exc:
        return _error_row(exc, _DIED)
    except Exception as exc:  # e.g. an unpicklable result
        return _error_row(exc)


def _pool_rows(items: List[PlannedRun], workers: int, threads: int) -> Rows:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = _mp_context()
    pending = deque(items)
    running: Dict[Any, PlannedRun] = {}
    pool = None
    finished = False
    try:
        while pending or running:
            if pool is None:
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                           initializer=_init_worker, initargs=(threads,))
            broken = False
            # at most one run per worker in flight: when a worker dies, only those few are lost
            while pending and len(running) < workers:
                item = pending.popleft()
                try:
                    running[pool.submit(execute, *item.args())] = item
                except BrokenProcessPool:
                    pending.appendleft(item)
                    broken = True
                    break
            done = wait(list(running), return_when=FIRST_COMPLETED)[0] if running else set()
            for future in done:
                broken = broken or isinstance(future.exception(), BrokenProcessPool)
            if broken:  # every in-flight run of a dead pool fails: collect them all
                done = wait(list(running))[0]
            for future in done:
                yield running.pop(future), _future_row(future)
            if broken:
                _stop_pool(pool, graceful=False)
                pool = None
        finished = True
    finally:
        if pool is not None:
            _stop_pool(pool, graceful=finished)


def _ray_module():
    try:
        import ray  # noqa: F401
    except ImportError:
        raise HgimbError(f"--backend ray needs Ray, which is not installed here: {RAY_HINT} "
                         "(or use --backend local)") from None
    return ray


def _ray_execute(threads: int, config: Dict[str, Any], key: str, save: bool) -> Dict[str, Any]:
    """The remote side: :func:`execute` in a scratch folder of the node that runs it; returns the
    row, the log text and the run directory (a tar archive, when ``save``)."""
    import io
    import tarfile
    import tempfile

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix=f"hgimb-{key}-") as scratch:
        log = Path(scratch) / f"{key}.log"
        run_dir = Path(scratch) / "run"
        row = execute(config, key, str(log), str(run_dir) if save else None)
        archive = None
        if save and run_dir.is_dir():
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                tar.add(run_dir, arcname=".")
            archive = buffer.getvalue()
        text = log.read_text(errors="replace") if log.is_file() else ""
    return {"row": row, "log": text, "run": archive}


def _land_ray_result(item: PlannedRun, payload: Dict[str, Any]) -> Dict[str, Any]:
    """Write a remote run's log and run directory where the local backend writes them; return its row."""
    item.log.parent.mkdir(parents=True, exist_ok=True)
    with open(item.log, "a") as handle:  # appended, as execute appends: a retried run keeps its history
        handle.write(payload.get("log") or "")
    archive = payload.get("run")
    if archive and item.save_dir is not None:
        import io
        import tarfile

        from ..engine.outdir import atomic_dir

        def unpack(tmp: Path) -> None:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(tmp, **options)

        atomic_dir(item.save_dir, unpack)
    return payload["row"]


def _ray_failure(item: PlannedRun, exc: BaseException) -> Dict[str, Any]:
    """The row of a task Ray could not run to its end (its worker died, the node was lost)."""
    row = _error_row(exc, f"the Ray task failed: {one_line(exc)}; rerun with --retry-failed")
    item.log.parent.mkdir(parents=True, exist_ok=True)
    with open(item.log, "a") as handle:
        handle.write(f"=== run {item.run_id} failed on Ray {_now()}: {type(exc).__name__}\n{exc}\n")
    return row


def _ray_connect(ray, address: Optional[str]) -> bool:
    """Connect (or start a local instance); True when this call did, so that it shuts it down."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except Exception as exc:  # ConnectionError, ValueError (bad address), ...
        where = f"at '{address}'" if address else "(local instance)"
        hint = "; start one with 'ray start --head' or drop --address" if address == "auto" else ""
        raise HgimbError(f"could not connect to Ray {where}: {one_line(exc)}{hint}") from None
    return True


def _ray_rows(items: List[PlannedRun], threads: int, address: Optional[str] = None,
              in_flight: Optional[int] = None) -> Rows:
    """One ``ray.remote`` task per run, at most ``in_flight`` submitted at a time (default: all,
    and Ray runs as many as the cluster's CPUs allow); rows in order of completion."""
    ray = _ray_module()
    started = _ray_connect(ray, address) if items else False
    remote = ray.remote(num_cpus=threads, max_retries=0)(_ray_execute)
    pending = deque(items)
    refs: Dict[Any, PlannedRun] = {}
    limit = in_flight or len(items)
    try:
        while pending or refs:
            while pending and len(refs) < limit:
                item = pending.popleft()
                ref = remote.remote(threads, item.config.to_dict(), item.run_id, item.save_dir is not None)
                refs[ref] = item
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                item = refs.pop(ref)
                try:
                    payload = ray.get(ref)
                except Exception as exc:  # the task itself died (execute never raises for a failed run)
                    yield item, _ray_failure(item, exc)
                    continue
                yield item, _land_ray_result(item, payload)
    finally:
        for ref in refs:  # interrupted: stop what is still queued or running
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if started:
            with contextlib.suppress(Exception):
                ray.shutdown()


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
    row["finished_at"] = _now()
    return row


def run_grid(configs: List[RunConfig], out: str | Path, *, workers: Optional[int] = None,
             retry_failed: bool = False, save_runs: bool = False, quiet: bool = False,
             backend: str = "local", address: Optional[str] = None,
             echo: Callable[[str], None] = print) -> GridOutcome:
    """Run every config not yet recorded ok in ``<out>/results.jsonl``; returns the tally.
    ``backend="ray"`` runs each as a Ray task (``address``: see the module docstring)."""
    if backend not in ("local", "ray"):
        raise HgimbError(f"--backend must be 'local' or 'ray', got '{backend}'")
    if address is not None and backend != "ray":
        raise HgimbError(f"--address {address} applies to --backend ray only")
    if backend == "ray":
        _ray_module()
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
        cores = available_cores()
        requested = workers
        workers = max(1, min(workers or cores, len(todo) or 1))
        # HGIMB_THREADS caps torch threads per run (e.g. 1 on a machine shared with other jobs,
        # where oversubscribed torch threads slow training down several-fold)
        threads = int(os.environ.get("HGIMB_THREADS") or max(1, cores // workers))
        if backend == "ray":
            # one CPU per run unless HGIMB_THREADS says otherwise: Ray fills the cluster's CPUs
            rows = _ray_rows(todo, int(os.environ.get("HGIMB_THREADS") or 1), address, in_flight=requested)
        elif workers == 1:
            rows = _inline_rows(todo, threads)
        else:
            rows = _pool_rows(todo, workers, threads)
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
