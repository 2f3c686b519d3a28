"""Pretrained universal-potential features: ``--features chgnet``.

CHGNet (Deng et al., Nature Machine Intelligence 2023; package ``chgnet``, whose wheel ships
the pretrained weights, model 0.3.0 here) is a GNN trained on ~1.5 M Materials Project
relaxation frames. Its hidden states are transferable descriptors:

* per atom: ``atom_fea``, the 64-dim atom features before CHGNet's last interaction block
  (what CHGNet reads its magnetic moments from) -> appended to every graph's ``x``, so the
  GNNs start from them;
* per crystal: ``crystal_fea``, the mean of the final atom features (64-dim) -> ``u``, for
  tabular models and the CGCNN readout.

CHGNet builds its own graph (6 Å atom cutoff) and refuses structures with an atom that has no
neighbour within it; such structures are reported by id with CHGNet's reason (or dropped with
``--skip-bad``). Inference runs on ``--device`` (CPU by default, CUDA with ``--device cuda``)
under ``torch.no_grad``; results are cached per CIF content hash, so this runs once per
structure (2,186 structures: about 3 minutes on one CPU core).
"""
from __future__ import annotations

import warnings
from typing import List

import numpy as np

from . import register_features
from .store import attach_atom, attach_global, drop_failed, per_structure

VERSION = 1
MODEL_NAME = "0.3.0"
BATCH = 16


def _device(name: str) -> str:
    from ..engine.trainer import resolve_device

    return str(resolve_device(name))


def _compute_with(device: str):
    def compute(pairs) -> List[dict]:
        import torch
        from chgnet.model import CHGNet
        from pymatgen.core import Structure

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = _model(device)
        out: List[dict] = [{} for _ in pairs]
        graphs, where = [], []
        for k, (item_id, text) in enumerate(pairs):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    structure = Structure.from_str(text, fmt="cif")
                graphs.append(model.graph_converter(structure, graph_id=str(item_id)))
                where.append(k)
            except Exception as exc:  # isolated atoms, unknown elements: reported by id upstream
                message = " ".join(str(exc).split()) or type(exc).__name__
                out[k] = {"error": f"CHGNet: {message}"}
        with torch.no_grad():
            predictions = model.predict_graph(graphs, task="e", return_atom_feas=True, return_crystal_feas=True,
                                              batch_size=BATCH) if graphs else []
        if isinstance(predictions, dict):
            predictions = [predictions]
        for k, prediction in zip(where, predictions):
            out[k] = {"atom": np.asarray(prediction["atom_fea"], dtype=np.float32),
                      "crystal": np.asarray(prediction["crystal_fea"], dtype=np.float32).reshape(-1)}
        return out

    return compute


_MODELS: dict = {}


def _model(device: str):
    if device not in _MODELS:
        from chgnet.model import CHGNet

        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its parameter count
            _MODELS[device] = CHGNet.load(model_name=MODEL_NAME, use_device=device, verbose=False)
    return _MODELS[device]


@register_features("chgnet", kinds=("graph",),
                   help="pretrained CHGNet 0.3.0 embeddings: 64 per atom (GNN input) + 64 per crystal (u)")
def chgnet_features(task, cfg):
    import chgnet

    device = _device(cfg.device)
    # one process: CHGNet is a torch model (threads, not forks); chunks bound the memory
    results = per_structure(task, "chgnet", VERSION, {"chgnet": chgnet.__version__, "model": MODEL_NAME},
                            _compute_with(device), chunk_size=128, workers=1, quiet=cfg.quiet)
    task, results = drop_failed(task, results, "chgnet", cfg.skip_bad)
    task = attach_atom(task, [r["atom"] for r in results], "chgnet")
    crystal = np.stack([r["crystal"] for r in results])
    return attach_global(task, crystal, [f"crystal_fea_{i}" for i in range(crystal.shape[1])], "chgnet")
