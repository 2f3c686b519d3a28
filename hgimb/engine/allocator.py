"""Keep freed tensor memory in the process heap instead of returning it to the OS (glibc).

glibc serves allocations above its mmap threshold (128 KiB, adapting up to 32 MiB) with a fresh
``mmap`` and gives them back with ``munmap`` on free. A full-graph epoch allocates and frees the
same large activation and gradient tensors every step, so the kernel maps, zero-fills and unmaps
them again each time: on HGT/ACM (255k paper-term edges) 54% of the process time was system time.
Two ``mallopt`` settings stop that churn: no mmap for heap allocations and no trimming of the heap
top, so freed blocks are reused by the next step. Measured with ``scripts/bench_allocator.py`` (see
BENCHMARKS.md, Speed): HGT on ACM 6.0 -> 2.3 s/epoch, HAN 10.9 -> 6.2, GAT and RGCN unchanged. The
price is memory: what is freed stays with the process until it exits and the heap fragments, so
peak RSS grew 35% for HGT on ACM (2.1 -> 2.8 GB), 9% for HAN, ~0 for GAT/RGCN. Where memory is
tighter than time, ``HGIMB_MALLOC=system`` keeps glibc's defaults.

No library exposes this (PyTorch's CPU allocator is plain malloc), hence ctypes. Non-glibc
platforms (macOS, musl) are left alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_MAX = -4

_applied = None


def tune_allocator() -> bool:
    """Apply the settings once per process; returns whether they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("HGIMB_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return _applied
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; the trim threshold is the largest positive int
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
