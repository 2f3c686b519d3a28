"""Extra input features: ``--features NAME[+NAME...]`` (one registry, one entry per feature set).

A feature set is a function ``(task, cfg) -> task`` registered with :func:`register_features`.
Crystal feature sets (graph tasks) add two kinds of inputs to every graph:

* per-crystal vectors in ``data.u`` (``[1, D]``; several sets are concatenated in the order
  written): what tabular models (``random-forest``, ``hist-gb``, ...) read, and what the
  ``cgcnn`` and ``roost`` readouts fuse with their pooled embeddings;
* per-atom vectors appended to ``data.x`` (``chgnet``): what the GNNs' first layer reads
  (``roost`` with ``element_features=x``: averaged per element).

Every crystal feature set is computed once per structure and cached by the SHA-256 of the CIF's
bytes (:mod:`hgimb.features.store`); a structure a featurizer cannot handle is reported by id
with the reason, or dropped with ``--skip-bad``. See docs/crystal.md.
"""
from __future__ import annotations

from typing import Callable, Tuple

from ..errors import HgimbError, did_you_mean
from ..registry import Registry

FEATURES: Registry = Registry("feature set")
_KINDS: dict = {}


def register_features(name: str, kinds: Tuple[str, ...], help: str = "") -> Callable:
    """Decorator for ``fn(task, cfg) -> task``; ``kinds``: the task kinds it applies to."""

    def deco(fn):
        FEATURES.register(name, help)(fn)
        _KINDS[name] = tuple(kinds)
        return fn

    return deco


def feature_names(spec: str) -> list[str]:
    """``"magpie+chgnet"`` -> ``["magpie", "chgnet"]``; ``"default"`` -> ``[]``."""
    _load_all()
    if spec in ("default", "", None):
        return []
    names = [part.strip() for part in str(spec).split("+")]
    for name in names:
        if name not in FEATURES:
            raise HgimbError(f"unknown feature set '{name}' in --features {spec}{did_you_mean(name, FEATURES.names())}")
    if len(set(names)) != len(names):
        raise HgimbError(f"--features {spec} names a feature set twice")
    return names


def add_features(task, cfg):
    """Apply every feature set of ``cfg.features`` in order."""
    for name in feature_names(cfg.features):
        if task.kind not in _KINDS[name]:
            raise HgimbError(f"--features {name} applies to {' and '.join(_KINDS[name])} tasks; "
                             f"'{task.name}' is a {task.kind} task")
        task = FEATURES.get(name)(task, cfg)
    return task


def _load_all() -> None:
    from . import descriptors, pretrained  # noqa: F401  (register themselves)


@register_features("metapath2vec", kinds=("node",),
                   help="metapath2vec embeddings as input features of featureless node types (--metapaths)")
def _metapath2vec(task, cfg):
    from ..models.metapath2vec import metapath2vec_features

    return metapath2vec_features(task, cfg.metapaths, seed=cfg.seed)
