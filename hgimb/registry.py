"""A tiny name -> object registry shared by datasets, models and remedies.

One registry per concept; entries register themselves with a decorator in the module that
defines them, so adding a dataset/model/remedy is one new file plus one import line in the
package ``__init__``. An entry may declare its parameters (:class:`hgimb.params.Param` specs),
which the concept's registry validates before calling the entry and ``--help`` lists.
"""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, TypeVar

from .errors import HgimbError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, T] = {}
        self._help: Dict[str, str] = {}
        self._params: Dict[str, tuple] = {}

    def register(self, name: str, help: str = "", params=()) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise RuntimeError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = obj
            self._help[name] = help or (getattr(obj, "__doc__", "") or "").strip().split("\n")[0]
            self._params[name] = tuple(params)
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise HgimbError(f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self, name: str) -> str:
        return self._help.get(name, "")

    def params(self, name: str) -> tuple:
        """The declared parameters (:class:`hgimb.params.Param`) of entry ``name``."""
        self.get(name)  # unknown names raise
        return self._params.get(name, ())

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
