"""Remedy registry: name -> Remedy subclass; ``build_remedy('focal+balanced-sampler')``.

A remedy is a :class:`~hgimb.imbalance.base.Remedy` subclass with a unique ``name``, its declared
``--remedy-param`` parameters as ``spec`` (:class:`hgimb.params.Param`; registering derives
``params``, name -> default, from it, and :func:`build_remedy` validates the values before
constructing the parts, so a remedy reads typed values from ``self.p``; ``--remedy-param k=v``
goes to whichever part of a composition declares ``k``) and the hooks it needs (``check``/``setup``
with the typed :class:`~hgimb.imbalance.base.RemedyContext`, ``init_model``, ``train_index``,
``batch`` with the step's :class:`~hgimb.imbalance.base.BatchContext`, ``synthesize``, ``loss``,
``adjust``/``apply``: see :mod:`hgimb.imbalance.base`). ``@register_remedy`` makes it a
``--remedy`` name; the same objects can skip the registry: ``Trainer(task, model, remedy, cfg)``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from ..errors import HgimbError
from ..params import defaults, validate
from ..registry import Registry
from .base import ComposedRemedy, Remedy

REMEDIES: Registry = Registry("remedy")


def register_remedy(cls):
    """Class decorator: registers a Remedy subclass under ``cls.name`` with its declared ``spec``."""
    doc = (cls.__doc__ or "").strip().split("\n")[0]
    spec = tuple(getattr(cls, "spec", ()))
    cls.params = defaults(spec)
    return REMEDIES.register(cls.name, doc, params=spec)(cls)


class NoRemedy(Remedy):
    """Plain cross-entropy: no remedy (the baseline every remedy is compared with)."""

    name = "none"


register_remedy(NoRemedy)


def remedy_params(spec: str) -> Dict[str, Any]:
    """Declared parameters (with defaults) of the remedies in ``spec``."""
    from . import _load_all  # noqa: F401

    out: Dict[str, Any] = {}
    for name in _names(spec):
        out.update(REMEDIES.get(name).params)
    return out


def _names(spec: str):
    names = [n.strip() for n in (spec or "none").split("+")]
    if not all(names):
        raise HgimbError(f"remedy '{spec}' has an empty part; name remedies joined by '+', e.g. focal+threshold")
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise HgimbError(f"remedy '{spec}' names {sorted(dupes)} more than once")
    return names


def build_remedy(spec: str, params: Optional[Dict[str, Any]] = None) -> ComposedRemedy:
    """Build the composed remedy for ``spec``; ``params`` go to whichever parts declare them."""
    from . import _load_all  # noqa: F401

    params = dict(params or {})
    names = _names(spec)
    if "none" in names and len(names) > 1:
        raise HgimbError(f"remedy '{spec}' combines 'none' with other remedies; drop 'none'")
    classes = [REMEDIES.get(n) for n in names]
    declared = {k for cls in classes for k in cls.params}
    unknown = sorted(set(params) - declared)
    if unknown:
        raise HgimbError(
            f"remedy parameter(s) {unknown} not used by remedy '{spec}'; its parameters: {sorted(declared) or 'none'}"
        )
    parts = [cls(**validate(REMEDIES.params(cls.name), {k: v for k, v in params.items() if k in cls.params},
                            f"remedy '{cls.name}'", flag="--remedy-param", noun="parameter"))
             for cls in classes]
    return ComposedRemedy(parts)
