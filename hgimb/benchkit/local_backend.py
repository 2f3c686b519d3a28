"""The local backend: runs on this machine.

``workers == 1`` runs in this process (easiest to debug; a crash in native code ends the grid);
more workers run in a ``ProcessPoolExecutor`` over a ``forkserver`` (``spawn`` where there is
none) context whose server has already imported torch and hgimb, each worker with
``cores // workers`` torch threads (or ``$HGIMB_THREADS``) so that the machine is not
oversubscribed. At most one run per worker is in flight: when a worker dies, only the runs
beside it are lost (recorded as errors), and a fresh pool runs the rest.
"""
from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import torch

from ..errors import HgimbError
from . import worker

if TYPE_CHECKING:
    from .runner import PlannedRun

Rows = Iterator[Tuple["PlannedRun", Dict[str, Any]]]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check(address: Optional[str]) -> None:
    if address is not None:
        raise HgimbError(f"--address {address} applies to --backend ray only")


def rows(items: List["PlannedRun"], workers: Optional[int], address: Optional[str] = None) -> Rows:
    """``(run, row)`` per run, in order of completion; ``workers``: processes (default: one per
    core, at most one per run)."""
    cores = available_cores()
    workers = max(1, min(workers or cores, len(items) or 1))
    # HGIMB_THREADS caps torch threads per run (e.g. 1 on a machine shared with other jobs,
    # where oversubscribed torch threads slow training down several-fold)
    threads = int(os.environ.get("HGIMB_THREADS") or max(1, cores // workers))
    if workers == 1:
        yield from _inline_rows(items, threads)
    else:
        yield from _pool_rows(items, workers, threads)


def _inline_rows(items: List["PlannedRun"], threads: int) -> Rows:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for item in items:
            yield item, worker.execute(*item.args())
    finally:
        torch.set_num_threads(previous)


def _init_worker(threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops workers
    torch.set_num_threads(threads)


def _mp_context():
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        context = mp.get_context("forkserver")
        # Workers fork from a server that imported torch + hgimb once (a spawn per worker would
        # pay the multi-second import each time). No-op if the server already runs.
        context.set_forkserver_preload([worker.__name__])
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
        return worker.error_row(exc, _DIED)
    except Exception as exc:  # e.g. an unpicklable result
        return worker.error_row(exc)


def _pool_rows(items: List["PlannedRun"], workers: int, threads: int) -> Rows:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = _mp_context()
    pending = deque(items)
    running: Dict[Any, "PlannedRun"] = {}
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
                    running[pool.submit(worker.execute, *item.args())] = item
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
