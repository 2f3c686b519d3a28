"""hgimb: class-imbalanced classification on heterogeneous and crystal graphs."""

__version__ = "0.1.0"
