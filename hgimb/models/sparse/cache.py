"""A cache of values derived from graph tensors, keyed by the tensors' identity."""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Callable, Hashable, Optional, Sequence

import torch

class GraphCache:
    """Cache values derived from graph tensors, keyed by the tensors' identity.

    ``get(tensors, extra, build)`` returns the cached value when every tensor in ``tensors``
    is the very same (live) object as when it was cached and has not been modified in place
    (``_version``); otherwise it calls ``build()``. Holding weak references means a new graph
    can never hit a stale entry through a reused memory address, and at most ``maxsize``
    entries are kept (mini-batches each bring a new graph).

    The cache is not state: copying or pickling a model gives an empty cache.
    """

    def __init__(self, maxsize: int = 4):
        self.maxsize = maxsize
        self._entries: "OrderedDict[Hashable, tuple]" = OrderedDict()

    def get(self, tensors: Sequence[Optional[torch.Tensor]], extra: Hashable, build: Callable):
        key = (tuple(id(t) for t in tensors), extra)
        entry = self._entries.get(key)
        if entry is not None:
            refs, versions, value = entry
            if all(
                (t is None and r is None) or (r is not None and r() is t and t._version == v)
                for t, r, v in zip(tensors, refs, versions)
            ):
                self._entries.move_to_end(key)
                return value
            del self._entries[key]
        value = build()
        refs = tuple(None if t is None else weakref.ref(t) for t in tensors)
        versions = tuple(None if t is None else t._version for t in tensors)
        # drop entries whose graph is gone, then the least recently used beyond maxsize
        for old_key in [k for k, (rs, _, _) in self._entries.items() if any(r is not None and r() is None for r in rs)]:
            del self._entries[old_key]
        self._entries[key] = (refs, versions, value)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __deepcopy__(self, memo):
        return GraphCache(self.maxsize)

    def __getstate__(self):
        return {"maxsize": self.maxsize}

    def __setstate__(self, state):
        self.maxsize = state["maxsize"]
        self._entries = OrderedDict()
