"""Models. Importing this package registers every model."""
from .base import GraphModel, HeteroInput, ModelConfig  # noqa: F401
from .registry import MODELS, build_model  # noqa: F401
from . import _load_all  # noqa: F401,E402
