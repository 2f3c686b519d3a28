"""``cora``, ``citeseer``, ``pubmed``: the Planetoid citation graphs with their public split.

Files: ``<root>/planetoid/ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}`` (the raw release of
https://github.com/kimiyoung/planetoid). Parsing is PyG's ``read_planetoid_data`` (offline, no
dataset folder layout needed). The Task has one node type ``paper`` with features ``x`` and the
edge type ``("paper", "cites", "paper")`` (both directions, as PyG stores it); the split is the
public one (20 training nodes per class, 500 validation, 1,000 test), ``official_split=True``.
Nodes without a label in the raw files (CiteSeer's isolated test-range nodes, which PyG fills
with zero rows) get ``y = -1`` instead of PyG's arbitrary class 0.

Dataset option ``normalize`` (``--dataset-option normalize=true``): row-normalised features, as
PyG's ``T.NormalizeFeatures()`` that the GraphENS / TAM / GraphSHA code applies (shift by the
global minimum, then divide each row by its sum, rows summing to 0 left as they are). The raw
0/1 bag of words is the default.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch_geometric.data import HeteroData

from ..errors import HgimbError
from .download import download as fetch
from .download import DOWNLOAD, NORMALIZE, PLANETOID_EXTS, PLANETOID_NAMES, missing_data_error, source_page
from .registry import register_named
from .task import Task

# Cora's class of each Planetoid label index, identified by the class sizes (351 Theory, 217
# Reinforcement_Learning, ... all distinct; tests/test_planetoid.py checks them). CiteSeer and
# PubMed are not in the shared data root to verify an order against, so they get class0, class1, ...
CLASS_NAMES = {
    "cora": ["Theory", "Reinforcement_Learning", "Genetic_Algorithms", "Neural_Networks",
             "Probabilistic_Methods", "Case_Based", "Rule_Learning"],
}


def normalize_features(x: torch.Tensor) -> torch.Tensor:
    """PyG's ``NormalizeFeatures``: ``x - x.min()``, each row divided by its sum (clamped at 1)."""
    x = x - x.min()
    return x / x.sum(dim=-1, keepdim=True).clamp(min=1)


def read_planetoid(folder: str | Path, name: str, normalize: bool = False) -> Task:
    """A Planetoid dataset from ``folder/ind.<name>.*`` as a node Task with the public split."""
    from torch_geometric.io import read_planetoid_data
    from torch_geometric.io.planetoid import read_file

    folder = Path(folder).expanduser()
    missing = [f"ind.{name}.{ext}" for ext in PLANETOID_EXTS if not (folder / f"ind.{name}.{ext}").is_file()]
    if missing:
        raise HgimbError(
            f"Planetoid '{name}': {folder} lacks {', '.join(missing)}; download them from {source_page(name)} into {folder}"
        )
    try:
        raw = read_planetoid_data(str(folder), name)
        # which nodes carry a label at all (the one-hot rows; see the module docstring)
        ally, ty = read_file(str(folder), name, "ally"), read_file(str(folder), name, "ty")
        test_index = read_file(str(folder), name, "test.index")
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, IndexError, KeyError, AttributeError,
            TypeError, RuntimeError) as exc:  # whatever a damaged or foreign pickle raises
        raise HgimbError(
            f"Planetoid '{name}': cannot read ind.{name}.* in {folder} ({type(exc).__name__}: {exc}); "
            f"replace the files with the originals from {source_page(name)}"
        ) from None
    num_nodes = int(raw.num_nodes)
    labelled = torch.zeros(num_nodes, dtype=torch.bool)
    labelled[: ally.shape[0]] = ally.sum(dim=1) > 0
    labelled[test_index] = ty.sum(dim=1) > 0
    y = torch.where(labelled, raw.y, torch.full_like(raw.y, -1))

    data = HeteroData()
    data["paper"].x = normalize_features(raw.x) if normalize else raw.x
    data["paper"].num_nodes = num_nodes
    data["paper", "cites", "paper"].edge_index = raw.edge_index
    split = {part: mask.nonzero().view(-1) for part, mask in
             (("train", raw.train_mask), ("val", raw.val_mask), ("test", raw.test_mask))}
    num_classes = int(raw.y.max()) + 1
    names = CLASS_NAMES.get(name, [])
    class_names = names if len(names) == num_classes else [f"class{c}" for c in range(num_classes)]
    meta = {"source": str(folder), "official_split": True, "format": "planetoid", "normalized_features": bool(normalize),
            "num_nodes": {"paper": num_nodes}, "num_edges": {"paper__cites__paper": int(raw.edge_index.shape[1])}}
    return Task(name=name, kind="node", class_names=class_names, y=y, split=split, data=data,
                target_types=["paper"], item_ids=None, meta=meta)


def _register_named(name: str):
    def loader(root, download: bool, normalize: bool) -> Task:
        folder = Path(root).expanduser() / "planetoid"
        present = all((folder / f"ind.{name}.{ext}").is_file() for ext in PLANETOID_EXTS)
        if not present and download:
            fetch(name, Path(root).expanduser())
        elif not present and not any((folder / f"ind.{name}.{ext}").exists() for ext in PLANETOID_EXTS):
            raise missing_data_error(name, [folder / f"ind.{name}.*"])
        return read_planetoid(folder, name, normalize=normalize)  # names the missing files when only some are there

    return register_named(name, loader, f"Planetoid {name} citation graph, public split (<root>/planetoid/ind.{name}.*)",
                          (DOWNLOAD, NORMALIZE))


for _name in PLANETOID_NAMES:
    _register_named(_name)
