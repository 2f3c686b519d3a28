"""The Ray backend: each run is one remote task on a Ray cluster.

``address``: ``auto`` for a running cluster, ``ray://host:port`` for Ray client, none to start a
local instance (shut down again at the end). The task calls the same
:func:`hgimb.benchkit.worker.execute` as the local backend, with its log and run directory in a
temporary folder on the node that ran it, and returns the row, the log text and (``save_runs``)
the run directory as a tar archive; the driver writes the log and run directory where the local
backend would, so resume and crash records are the same and no shared filesystem is needed.
Each task asks Ray for ``$HGIMB_THREADS`` CPUs (default 1) and is not retried by Ray (a run that
kills its worker is recorded as an error, as locally).
"""
from __future__ import annotations

import contextlib
import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import torch

from ..errors import HgimbError
from . import worker

if TYPE_CHECKING:
    from .runner import PlannedRun

Rows = Iterator[Tuple["PlannedRun", Dict[str, Any]]]
RAY_HINT = "pip install 'hgimb[ray]'"


def _module():
    try:
        import ray  # noqa: F401
    except ImportError:
        raise HgimbError(f"--backend ray needs Ray, which is not installed here: {RAY_HINT} "
                         "(or use --backend local)") from None
    return ray


def check(address: Optional[str]) -> None:
    _module()


def _execute(threads: int, config: Dict[str, Any], key: str, save: bool) -> Dict[str, Any]:
    """The remote side: :func:`~hgimb.benchkit.worker.execute` in a scratch folder of the node
    that runs it; returns the row, the log text and the run directory (a tar archive, when ``save``)."""
    import io
    import tarfile
    import tempfile

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix=f"hgimb-{key}-") as scratch:
        log = Path(scratch) / f"{key}.log"
        run_dir = Path(scratch) / "run"
        row = worker.execute(config, key, str(log), str(run_dir) if save else None)
        archive = None
        if save and run_dir.is_dir():
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                tar.add(run_dir, arcname=".")
            archive = buffer.getvalue()
        text = log.read_text(errors="replace") if log.is_file() else ""
    return {"row": row, "log": text, "run": archive}


def _land_result(item: "PlannedRun", payload: Dict[str, Any]) -> Dict[str, Any]:
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


def _failure(item: "PlannedRun", exc: BaseException) -> Dict[str, Any]:
    """The row of a task Ray could not run to its end (its worker died, the node was lost)."""
    row = worker.error_row(exc, f"the Ray task failed: {worker.one_line(exc)}; rerun with --retry-failed")
    item.log.parent.mkdir(parents=True, exist_ok=True)
    with open(item.log, "a") as handle:
        handle.write(f"=== run {item.run_id} failed on Ray {worker.now()}: {type(exc).__name__}\n{exc}\n")
    return row


def _connect(ray, address: Optional[str]) -> bool:
    """Connect (or start a local instance); True when this call did, so that it shuts it down."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except Exception as exc:  # ConnectionError, ValueError (bad address), ...
        where = f"at '{address}'" if address else "(local instance)"
        hint = "; start one with 'ray start --head' or drop --address" if address == "auto" else ""
        raise HgimbError(f"could not connect to Ray {where}: {worker.one_line(exc)}{hint}") from None
    return True


def rows(items: List["PlannedRun"], workers: Optional[int], address: Optional[str] = None) -> Rows:
    """One ``ray.remote`` task per run, at most ``workers`` submitted at a time (default: all,
    and Ray runs as many as the cluster's CPUs allow); rows in order of completion."""
    # one CPU per run unless HGIMB_THREADS says otherwise: Ray fills the cluster's CPUs
    threads = int(os.environ.get("HGIMB_THREADS") or 1)
    ray = _module()
    started = _connect(ray, address) if items else False
    remote = ray.remote(num_cpus=threads, max_retries=0)(_execute)
    pending = deque(items)
    refs: Dict[Any, "PlannedRun"] = {}
    limit = workers or len(items)
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
                    yield item, _failure(item, exc)
                    continue
                yield item, _land_result(item, payload)
    finally:
        for ref in refs:  # interrupted: stop what is still queued or running
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if started:
            with contextlib.suppress(Exception):
                ray.shutdown()
