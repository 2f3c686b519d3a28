"""Dataset registry: name -> loader.

A loader is ``loader(root: pathlib.Path, **options) -> Task`` (options come from RunConfig's
``dataset_options`` and the crystal flags). Names with a prefix (``hgb:<path>``,
``crystal:<dir>``) are resolved by the loader registered for the prefix, which receives
``path=<rest>``.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import HgimbError
from ..registry import Registry

DATASETS: Registry = Registry("dataset")
PREFIXES: Registry = Registry("dataset prefix")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: explicit argument, else $HGIMB_DATA, else ./datasets."""
    return Path(root or os.environ.get("HGIMB_DATA") or "datasets").expanduser()


def dataset_names() -> list[str]:
    return DATASETS.names() + [f"{p}:<path>" for p in PREFIXES.names()]


def dataset_loader(name: str):
    """``(loader, fixed_kwargs)`` for a dataset name or ``prefix:path``."""
    from . import _load_all  # noqa: F401  (populates the registries)

    if ":" in name and name.split(":", 1)[0] in PREFIXES:
        prefix, path = name.split(":", 1)
        if not path:
            raise HgimbError(f"dataset '{name}' needs a path after '{prefix}:'")
        return PREFIXES.get(prefix), {"path": path}
    if name not in DATASETS:
        from ..errors import did_you_mean

        raise HgimbError(f"unknown dataset '{name}'{did_you_mean(name, dataset_names())}")
    return DATASETS.get(name), {}


def load_dataset(name: str, root: str | os.PathLike | None = None, **options):
    """Load a registered dataset (or ``prefix:path``) into a Task."""
    loader, fixed = dataset_loader(name)
    return loader(data_root(root), **fixed, **options)


def register_named(name: str, loader, help: str):
    """Register ``loader`` as the dataset ``name``: named ``load_<name>`` (``-`` -> ``_``),
    ``help`` as its docstring and its line in the dataset list. Returns the loader."""
    loader.__name__ = f"load_{name.replace('-', '_')}"
    loader.__doc__ = help
    return DATASETS.register(name, help)(loader)
