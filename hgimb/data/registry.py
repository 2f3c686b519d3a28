"""Dataset registry: name -> loader.

A loader is ``loader(root: pathlib.Path, **options) -> Task``, registered with
:func:`register_dataset` / :func:`register_prefix` and its declared parameters
(:class:`hgimb.params.Param`); options come from RunConfig's ``dataset_options`` and the
RunConfig fields the loader declares (``config.LOADER_FIELDS``: the crystal flags). The
registered callable validates the options against the declaration (unknown names, types,
ranges) and hands the loader every declared option, typed. Names with a prefix (``hgb:<path>``,
``crystal:<dir>``) are resolved by the loader registered for the prefix, which receives
``path=<rest>``.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from ..errors import HgimbError
from ..params import Param, validate
from ..registry import Registry

DATASETS: Registry = Registry("dataset")
PREFIXES: Registry = Registry("dataset prefix")


def _register(registry: Registry, name: str, help: str, params: Sequence[Param]):
    spec = tuple(params)
    prefixed = registry is PREFIXES

    def deco(loader):
        @functools.wraps(loader)
        def validated(root=None, **options):
            fixed = {"path": options.pop("path", None)} if prefixed else {}
            owner = f"dataset '{name}:{fixed['path']}'" if prefixed else f"dataset '{name}'"
            return loader(root, **fixed, **validate(spec, options, owner, flag="--dataset-option"))

        registry.register(name, help, params=spec)(validated)
        return validated

    return deco


def register_dataset(name: str, help: str = "", params: Sequence[Param] = ()):
    """Decorator: register ``loader(root, **options)`` under ``name``; returns the validating loader."""
    return _register(DATASETS, name, help, params)


def register_named(name: str, loader, help: str, params: Sequence[Param] = ()):
    """Register ``loader`` as the dataset ``name`` (a loader made for one name of a family, e.g.
    each HGB or Planetoid dataset): named ``load_<name>`` (``-`` -> ``_``), ``help`` as its
    docstring and its line in the dataset list. Returns the validating loader."""
    loader.__name__ = f"load_{name.replace('-', '_')}"
    loader.__doc__ = help
    return register_dataset(name, help, params)(loader)


def register_prefix(prefix: str, help: str = "", params: Sequence[Param] = ()):
    """Decorator: register ``loader(root, path, **options)`` for ``prefix:<path>`` names."""
    return _register(PREFIXES, prefix, help, params)


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


def is_dataset_name(name: str) -> bool:
    """Whether ``name`` is a registered dataset or a ``prefix:path`` of a registered prefix."""
    from . import _load_all  # noqa: F401

    return name in DATASETS or (":" in name and name.split(":", 1)[0] in PREFIXES)


def dataset_params(name: str) -> tuple:
    """The declared parameters of dataset ``name`` (or of its prefix)."""
    from . import _load_all  # noqa: F401

    if ":" in name and name.split(":", 1)[0] in PREFIXES:
        return PREFIXES.params(name.split(":", 1)[0])
    return DATASETS.params(name)


def load_dataset(name: str, root: str | os.PathLike | None = None, **options):
    """Load a registered dataset (or ``prefix:path``) into a Task."""
    loader, fixed = dataset_loader(name)
    return loader(data_root(root), **fixed, **options)


def load_configured(name: str, root: str | os.PathLike | None = None, options: Optional[Dict[str, Any]] = None,
                    **fields) -> Any:
    """:func:`load_dataset` with ``options`` (``--dataset-option``) plus the RunConfig ``fields``
    (``config.LOADER_FIELDS``) that the loader declares; an option given explicitly wins.
    ``threshold`` set for a dataset whose loader does not declare it raises."""
    loader, fixed = dataset_loader(name)
    declared = {p.name for p in dataset_params(name)}
    if fields.get("threshold") is not None and "threshold" not in declared:
        raise HgimbError(f"--threshold applies to datasets with real-valued targets (crystal graphs); "
                         f"'{name}' has class labels")
    options = dict(options or {})
    for key, value in fields.items():
        if key in declared:
            options.setdefault(key, value)
    return loader(data_root(root), **fixed, **options)
