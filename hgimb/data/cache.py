"""On-disk cache for processed datasets (parsed HGB tensors, crystal graphs, embeddings).

The data root may be read-only (CI mounts it without write bits), so the cache lives apart:
``$HGIMB_CACHE`` or ``~/.cache/hgimb``. Entries are keyed by a hash of everything that
determines their content (file bytes or size+mtime, parameters, format version) and written
atomically (temp file, then rename), so a killed process never leaves a corrupt entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def cache_dir() -> Path:
    return Path(os.environ.get("HGIMB_CACHE") or Path.home() / ".cache" / "hgimb").expanduser()


def file_fingerprint(path: str | os.PathLike) -> str:
    """Cheap identity of a file: resolved path, size and mtime (content hashing is for small files)."""
    st = os.stat(path)
    return f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}"


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_key(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def cache_path(namespace: str, key: str) -> Path:
    return cache_dir() / namespace / f"{key}.pt"


def load_or_build(namespace: str, key: str, build: Callable[[], Any]) -> Any:
    """Return the cached object for (namespace, key), building and storing it when absent."""
    path = cache_path(namespace, key)
    if path.is_file():
        try:
            return torch.load(path, weights_only=False)
        except Exception:  # a stale or truncated entry from an older version: rebuild it
            pass
    value = build()
    save_atomic(path, value)
    return value


def save_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(value, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
