"""Composition and structure descriptors from matminer: ``--features magpie``, ``fractions``.

``magpie`` is the descriptor set of the Magpie / matminer tradition that a materials scientist
reaches for first (Ward et al., npj Comput. Mater. 2016; matminer, Ward et al. 2018):

* ``ElementProperty.from_preset("magpie")``: min / max / range / mean / avg-dev / mode of 22
  elemental properties over the composition (132 values);
* ``Stoichiometry``: p-norms of the element fractions (6);
* ``ValenceOrbital``: mean s/p/d/f valence electrons and their fractions (8);
* ``DensityFeatures``: density, volume per atom, packing fraction (3; needs the structure).

``fractions`` is matminer's ``ElementFraction``: the atomic fraction of each of the 118 elements
(the input of ElemNet, Jha et al., Sci. Rep. 2018). Magpie's statistics summarise *which kind* of
elements a crystal holds; the fractions say *which* elements, in what proportion, so a property
carried by a few particular elements can be read off them directly.

matminer computes everything (no element tables are re-derived here). Values matminer leaves
undefined (NaN, e.g. a property unknown for an element) are imputed with the column median
over the dataset (label-free), and so are the values of a featurizer that raises on a
structure (e.g. ``ValenceOrbital`` on an element without valence data), with a one-line
warning naming the structures. Each structure's vector is cached by its CIF's content hash.
"""
from __future__ import annotations

import warnings
from functools import partial
from typing import List

import numpy as np

from . import register_features
from ..errors import warn_data
from .store import attach_global, default_workers, drop_failed, impute_columns, per_structure

VERSION = 1


def _magpie():
    from matminer.featurizers.composition import ElementProperty, Stoichiometry, ValenceOrbital
    from matminer.featurizers.structure import DensityFeatures

    composition = [ElementProperty.from_preset("magpie"), Stoichiometry(), ValenceOrbital()]
    structure = [DensityFeatures()]
    return composition, structure


def _fractions():
    from matminer.featurizers.composition import ElementFraction

    return [ElementFraction()], []


DESCRIPTOR_SETS = {"magpie": _magpie, "fractions": _fractions}  # name -> (composition, structure) featurizers


def descriptor_names(name: str) -> List[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        composition, structure = DESCRIPTOR_SETS[name]()
    return [n for f in composition + structure for n in f.feature_labels()]


def _compute(name: str, pairs) -> List[dict]:
    """Worker: ``(id, cif_text)`` -> ``{"crystal": float64 [D]}`` or ``{"error": reason}``."""
    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's rounding notes, matminer's citation hints
        composition, structure = DESCRIPTOR_SETS[name]()
        out = []
        for item_id, text in pairs:
            try:
                crystal = Structure.from_str(text, fmt="cif")
            except Exception as exc:  # a property of this structure, reported by id upstream
                out.append({"error": f"pymatgen: {_first_line(exc)}"})
                continue
            values, failed = [], []
            for featurizer in composition + structure:
                source = crystal.composition if featurizer in composition else crystal
                try:
                    values += list(featurizer.featurize(source))
                except Exception as exc:  # e.g. ValenceOrbital on an element without valence data
                    values += [np.nan] * len(featurizer.feature_labels())
                    failed.append(f"{type(featurizer).__name__}: {_first_line(exc)}")
            result = {"crystal": np.asarray(values, dtype=np.float64)}
            if failed:
                result["partial"] = "; ".join(failed)
            out.append(result)
    return out


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _descriptor_features(task, cfg, name: str):
    import matminer

    results = per_structure(task, name, VERSION, {"matminer": matminer.__version__}, partial(_compute, name),
                            workers=default_workers(), quiet=cfg.quiet, retry_errors=True)
    task, results = drop_failed(task, results, name, cfg.skip_bad)
    partial_rows = [k for k, r in enumerate(results) if "partial" in r]
    if partial_rows:  # a featurizer failed on part of the descriptors: those values are imputed
        ids = task.ids()
        warn_data(f"--features {name}: {len(partial_rows)} structure(s) with descriptors matminer could not "
                  f"compute, imputed with column medians; first: id {ids[partial_rows[0]]}: "
                  f"{results[partial_rows[0]]['partial']}")
    matrix = impute_columns(np.stack([r["crystal"] for r in results]))
    return attach_global(task, matrix, descriptor_names(name), name)


@register_features("magpie", kinds=("graph",),
                   help="matminer Magpie ElementProperty + Stoichiometry + ValenceOrbital + DensityFeatures "
                        "(149 per-crystal descriptors)")
def magpie_features(task, cfg):
    return _descriptor_features(task, cfg, "magpie")


@register_features("fractions", kinds=("graph",),
                   help="matminer ElementFraction: the atomic fraction of each element (118 per-crystal values)")
def fraction_features(task, cfg):
    return _descriptor_features(task, cfg, "fractions")
