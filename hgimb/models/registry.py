"""Model registry: name -> builder.

A builder is ``build(task: Task, cfg: ModelConfig) -> GraphModel``. ``kinds`` says which task
kinds ("node", "graph") the model supports; asking for another is a clear error.
"""
from __future__ import annotations

from ..errors import HgimbError
from ..registry import Registry

MODELS: Registry = Registry("model")
MODEL_KINDS: dict[str, tuple[str, ...]] = {}


def register_model(name: str, kinds=("node",), help: str = ""):
    def deco(builder):
        MODEL_KINDS[name] = tuple(kinds)
        return MODELS.register(name, help)(builder)

    return deco


def build_model(name: str, task, cfg):
    from . import _load_all  # noqa: F401  (populates the registry)

    builder = MODELS.get(name)
    if task.kind not in MODEL_KINDS[name]:
        fit = [n for n in MODELS.names() if task.kind in MODEL_KINDS[n]]
        raise HgimbError(
            f"model '{name}' does not handle {task.kind} tasks; models for {task.kind} tasks: {', '.join(fit)}"
        )
    return builder(task, cfg)
