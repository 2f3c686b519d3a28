"""Imbalance remedies. Importing this package registers every remedy."""
from .base import BatchContext, ComposedRemedy, GraphAugmentation, Remedy, RemedyContext, compose, cross_entropy  # noqa: F401
from .registry import REMEDIES, build_remedy, register_remedy, remedy_params  # noqa: F401
from . import _load_all  # noqa: F401,E402
