"""Model registry: name -> builder, per task kind.

A builder is ``build(task: Task, cfg: ModelConfig) -> model``, registered with
``@register_model(name, kinds, help, params, defaults=)``. One name may have a builder for node
tasks and another for graph tasks (``gat`` over a heterogeneous graph, or over crystal graphs);
asking for a kind a model does not handle is a clear error. Each builder declares its
``--model-option`` parameters (:class:`hgimb.params.Param`); :func:`build_model` validates
``cfg.options`` against them, so a builder reads every declared option from ``cfg.options``,
typed and defaulted.

The model it returns is any ``nn.Module`` that follows the model contract of
:mod:`hgimb.models.base`: ``encode(inputs) -> embeddings`` and ``head(embeddings) -> logits``;
declared where they apply, ``supports_neighbor_sampling`` and ``num_hops`` (mini-batch training
of node tasks, ``--batch-size``), ``classifier_head()`` (``prior-bias``) and ``no_weight_decay()``.
Subclassing :class:`~hgimb.models.base.GraphModel` gives a linear ``head`` and the defaults;
without a declaration a model trains full-batch, and a feature that needs one stops with one
``HgimbError`` line. A model that learns in one ``fit`` call follows :mod:`hgimb.engine.fitted`
instead. The same object can skip the registry: ``Trainer(task, model, remedy, cfg)``.
"""
from __future__ import annotations

import dataclasses

from ..errors import HgimbError, did_you_mean
from ..params import validate
from ..registry import Registry

MODELS: Registry = Registry("model")  # name -> {kind: builder}
_BUILDERS: dict[tuple[str, str], object] = {}
_PARAMS: dict[tuple[str, str], tuple] = {}  # (name, kind) -> declared --model-option parameters
_DEFAULTS: dict[str, dict] = {}  # name -> RunConfig values the model recommends (its paper / reference code)
# RunConfig fields that reach the builders through ``cfg.options`` (the trainer puts them there);
# a model that does not declare one ignores it
FIELD_OPTIONS = ("metapaths",)


def register_model(name: str, kinds=("node",), help: str = "", params=(), defaults=None):
    """Decorator: ``@register_model("rgcn", kinds=("node",), params=(Param(...), ...))`` on a builder.

    ``params``: the model's ``--model-option`` parameters; :func:`build_model` refuses other names
    and checks the values. ``defaults``: RunConfig values (``lr``, ``heads``, ... and
    ``model_options``) that replace the global defaults when this model is named and the user did
    not set them (:func:`model_defaults`)."""

    def deco(builder):
        for kind in kinds:
            if (name, kind) in _BUILDERS:
                raise RuntimeError(f"model '{name}' registered twice for {kind} tasks")
            _BUILDERS[(name, kind)] = builder
            _PARAMS[(name, kind)] = tuple(params)
        if defaults:
            _DEFAULTS.setdefault(name, {}).update(defaults)
        if name not in MODELS:
            MODELS.register(name, help)(name)
        return builder

    return deco


ENSEMBLE_SEP = "+"


def model_members(spec: str) -> list[str]:
    """The member names of ``--model a+b+c`` (one name: a list of one). Names are not checked
    here (:func:`check_members`); an empty member (``cgcnn+``) is refused."""
    names = [part.strip() for part in str(spec).split(ENSEMBLE_SEP)]
    if len(names) > 1 and not all(names):
        raise HgimbError(f"--model '{spec}': an ensemble joins model names with '{ENSEMBLE_SEP}', "
                         "e.g. cgcnn+random-forest; one of its names is empty")
    return names


def check_members(spec: str, kind: str) -> list[str]:
    """Every member of ``spec`` is a model with a builder for ``kind`` tasks (before anything
    trains); returns the member names."""
    names = model_members(spec)
    for name in names:
        _builder(name, kind)
    return names


def member_options(spec: str, kind: str, options) -> list[dict]:
    """``--model-option`` values split between the members of ``spec``: each member receives the
    options it declares; an option no member declares is refused (as for one model)."""
    names = check_members(spec, kind)
    declared = [{p.name for p in model_params(name, kind)} for name in names]
    unused = sorted(k for k in (options or {}) if k not in FIELD_OPTIONS and not any(k in d for d in declared))
    if unused:
        raise HgimbError(f"--model-option {', '.join(unused)}: declared by none of the models {', '.join(names)}; "
                         f"their options: {', '.join(sorted(set().union(*declared))) or 'none'}")
    return [{k: v for k, v in (options or {}).items() if k in d or k in FIELD_OPTIONS} for d in declared]


def model_defaults(name: str) -> dict:
    """RunConfig values recommended by model ``name`` (empty when it has none or is unknown); for
    an ensemble ``a+b``, the members' recommendations, the first member's where two differ."""
    from . import _load_all  # noqa: F401  (populates the registry)

    merged: dict = {}
    for member in reversed(model_members(name)):
        for key, value in _DEFAULTS.get(member, {}).items():
            merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) \
                else value
    return {key: dict(value) if isinstance(value, dict) else value for key, value in merged.items()}


def model_params(name: str, kind: str) -> tuple:
    """The declared ``--model-option`` parameters of model ``name`` for ``kind`` tasks."""
    from . import _load_all  # noqa: F401

    return _PARAMS.get((name, kind), ())


def check_model_options(name: str, kind: str, options) -> dict:
    """``options`` validated against the declaration: every declared option, typed and defaulted."""
    spec = model_params(name, kind)
    declared = {p.name for p in spec}
    given = {k: v for k, v in (options or {}).items() if k in declared or k not in FIELD_OPTIONS}
    return validate(spec, given, f"model '{name}'", flag="--model-option")


def model_kinds(name: str) -> list[str]:
    return sorted(kind for (n, kind) in _BUILDERS if n == name)


def models_for(kind: str) -> list[str]:
    return sorted(n for (n, k) in _BUILDERS if k == kind)


def _builder(name: str, kind: str):
    """The builder of model ``name`` for ``kind`` tasks, or a one-line HgimbError."""
    from . import _load_all  # noqa: F401  (populates the registry)

    if name not in MODELS:
        raise HgimbError(f"unknown model '{name}'{did_you_mean(name, MODELS.names())}")
    builder = _BUILDERS.get((name, kind))
    if builder is None:
        raise HgimbError(f"model '{name}' does not handle {kind} tasks; models for {kind} tasks: "
                         f"{', '.join(models_for(kind))}")
    return builder


def build_model(name: str, task, cfg):
    builder = _builder(name, task.kind)
    options = check_model_options(name, task.kind, cfg.options)
    return builder(task, dataclasses.replace(cfg, options=options))
