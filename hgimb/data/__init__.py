"""Loaders that turn files into Tasks. Importing this package registers every dataset."""
from .registry import DATASETS, PREFIXES, data_root, dataset_loader, dataset_names, load_dataset  # noqa: F401
from .task import Task  # noqa: F401
from . import _load_all  # noqa: F401,E402
# interop (registers the nx: and dgl: prefixes; DGL itself is imported only when used)
from .nx_io import from_networkx, to_networkx  # noqa: F401,E402
from .dgl_io import from_dgl, to_dgl  # noqa: F401,E402
