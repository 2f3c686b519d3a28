"""Model registry: name -> builder, per task kind.

A builder is ``build(task: Task, cfg: ModelConfig) -> GraphModel``. One name may have a builder
for node tasks and another for graph tasks (``gat`` over a heterogeneous graph, or over crystal
graphs); asking for a kind a model does not handle is a clear error.
"""
from __future__ import annotations

from ..errors import HgimbError, did_you_mean
from ..registry import Registry

MODELS: Registry = Registry("model")  # name -> {kind: builder}
_BUILDERS: dict[tuple[str, str], object] = {}


def register_model(name: str, kinds=("node",), help: str = ""):
    """Decorator: ``@register_model("rgcn", kinds=("node",))`` on a builder function."""

    def deco(builder):
        for kind in kinds:
            if (name, kind) in _BUILDERS:
                raise RuntimeError(f"model '{name}' registered twice for {kind} tasks")
            _BUILDERS[(name, kind)] = builder
        if name not in MODELS:
            MODELS.register(name, help)(name)
        return builder

    return deco


def model_kinds(name: str) -> list[str]:
    return sorted(kind for (n, kind) in _BUILDERS if n == name)


def models_for(kind: str) -> list[str]:
    return sorted(n for (n, k) in _BUILDERS if k == kind)


def build_model(name: str, task, cfg):
    from . import _load_all  # noqa: F401  (populates the registry)

    if name not in MODELS:
        raise HgimbError(f"unknown model '{name}'{did_you_mean(name, MODELS.names())}")
    builder = _BUILDERS.get((name, task.kind))
    if builder is None:
        raise HgimbError(
            f"model '{name}' does not handle {task.kind} tasks; models for {task.kind} tasks: "
            f"{', '.join(models_for(task.kind))}"
        )
    return builder(task, cfg)
