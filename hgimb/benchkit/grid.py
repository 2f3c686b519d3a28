"""A benchmark grid: axes (lists of values per RunConfig field), fixed RunConfig keys and
per-dataset overrides, expanded into validated RunConfigs with stable run ids.

Grid YAML (``configs/bench/*.yaml``)::

    out: bench/hgb                     # optional default output directory
    datasets: [freebase, acm]          # axes: a list (or a comma string) per field
    models: [rgcn, gat]
    remedies: [none, weighted, focal+balanced-sampler]
    seeds: 0-4                         # a range string, a list, or one int
    imbalance_ratio: [1, 10, 100]
    hidden: [32, 64]                   # any other RunConfig key with a list value is an axis too
    epochs: 200                        # scalar RunConfig keys are fixed for every run
    remedy_params: {gamma: 1.0}        # given to whichever remedies declare them
    dataset_overrides:                 # per dataset: fixed keys and/or axes
      acm: {lr: 0.005}
      magnetic-tc: {models: [cgcnn], threshold: 600}
    model_overrides:                   # per model, as the models axis spells it: fixed keys
      gat: {lr: 0.005, heads: 8}
      roost+random-forest: {epochs: 100, model_options: {element_features: x}}

Precedence (later wins): RunConfig defaults < the model's registry defaults (for keys nothing
below sets) < the file's fixed keys < the file's ``dataset_overrides[dataset]`` < its
``model_overrides[model]`` < command-line flags (fixed values and axes) < a run's axis values.
Dict-valued keys (``model_options``, ``dataset_options``, ``remedy_params``) merge key by key.
A model override lets one grid hold models that train with different settings (a GNN at its
authors' learning rate next to another at its own) without an axis that would cross them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from ..config import RunConfig
from ..errors import HgimbError

# Canonical axis names (RunConfig field -> the name used in grids and on the command line).
AXIS_NAMES = {"dataset": "datasets", "model": "models", "remedy": "remedies", "seed": "seeds",
              "imbalance_ratio": "imbalance_ratio"}
# Spellings accepted for the axes in grid files and flags.
AXIS_ALIASES = {"dataset": "dataset", "datasets": "dataset", "model": "model", "models": "model",
                "remedy": "remedy", "remedies": "remedy", "seed": "seed", "seeds": "seed",
                "imbalance_ratio": "imbalance_ratio", "imbalance_ratios": "imbalance_ratio"}
# RunConfig fields that change how a run is presented, not what it computes: not part of its id.
PRESENTATION = ("out", "quiet", "plots", "num_workers")
DICT_FIELDS = ("dataset_options", "model_options", "remedy_params")
GRID_KEYS = ("out", "dataset_overrides", "model_overrides")


@dataclass
class Grid:
    axes: Dict[str, List[Any]] = field(default_factory=dict)  # RunConfig field -> values
    fixed: Dict[str, Any] = field(default_factory=dict)  # RunConfig field -> value
    dataset_overrides: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    out: Optional[str] = None
    source: str = "grid"
    model_overrides: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # model spec -> fixed keys

    def merged(self, other: "Grid") -> "Grid":
        """``other`` (the command line) on top of this grid (a file): what ``other`` sets wins
        over this grid's keys, axes and per-dataset overrides alike."""
        fixed = _merge(self.fixed, other.fixed)
        overridden = set(other.fixed) | set(other.axes)
        overrides = {}
        for name, values in self.dataset_overrides.items():
            overrides[name] = _without(values, overridden, other.fixed)
        for name, values in other.dataset_overrides.items():
            overrides[name] = _merge(overrides.get(name, {}), values)
        models = {name: _without(values, overridden, other.fixed) for name, values in self.model_overrides.items()}
        for name, values in other.model_overrides.items():
            models[name] = _merge(models.get(name, {}), values)
        axes = {k: v for k, v in self.axes.items() if k not in other.fixed}
        return Grid({**axes, **other.axes}, fixed, overrides, other.out or self.out,
                    source=f"{self.source} + {other.source}", model_overrides=models)


def _without(values: Dict[str, Any], overridden: set, top: Dict[str, Any]) -> Dict[str, Any]:
    """An override's keys less those the command line sets (``overridden``); dict-valued keys
    stay and take the command line's entries (``top``) on top of their own."""
    kept = {k: v for k, v in values.items()
            if k not in overridden or (k in DICT_FIELDS and isinstance(v, dict))}
    for key in DICT_FIELDS:
        if key in kept and key in top:
            kept[key] = {**kept[key], **top[key]}
    return kept


def _merge(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    """``top`` over ``base``; dict-valued fields (dataset_options, ...) merge key by key."""
    out = dict(base)
    for key, value in top.items():
        if key in DICT_FIELDS and isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------------- parsing values
_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(RunConfig)}


def _coerce(name: str, value: Any, source: str) -> Any:
    """Give a value its RunConfig field type, so that ``10`` and ``10.0`` (or YAML's string
    ``5e-3``) are the same run with the same id."""
    kind = _FIELD_TYPES.get(name, "")
    if value is None or isinstance(value, bool):
        return value
    base = kind.replace("Optional[", "").rstrip("]")
    try:
        if base == "float":
            return float(value)
        if base == "int":
            as_float = float(value)
            if as_float != int(as_float):
                raise ValueError
            return int(as_float)
    except (TypeError, ValueError):
        raise HgimbError(f"{source}: '{name}' expects {base}, got {value!r}") from None
    if base == "bool" and isinstance(value, str):
        raise HgimbError(f"{source}: '{name}' expects true/false, got {value!r}")
    return value


_RANGE = re.compile(r"^\s*(-?\d+)\s*-\s*(-?\d+)\s*$")


def parse_seeds(value: Any, source: str = "--seeds") -> List[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,2,5-7"``; a list of ints/ranges; one int."""
    items = value if isinstance(value, (list, tuple)) else [value]
    seeds: List[int] = []
    for item in items:
        if isinstance(item, bool):
            raise HgimbError(f"{source}: seed {item!r} is not an integer")
        if isinstance(item, int):
            seeds.append(item)
            continue
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            match = _RANGE.match(part)
            if match:
                low, high = int(match.group(1)), int(match.group(2))
                if low > high:
                    raise HgimbError(f"{source}: seed range '{part}' is empty (start > end); write it as {high}-{low}")
                seeds.extend(range(low, high + 1))
            elif re.fullmatch(r"\d+", part):
                seeds.append(int(part))
            else:
                raise HgimbError(f"{source}: '{part}' is not a seed or a range like 0-4")
    if not seeds:
        raise HgimbError(f"{source}: no seeds given")
    bad = [s for s in seeds if s < 0]
    if bad:
        raise HgimbError(f"{source}: seeds must be >= 0, got {bad[0]}")
    return seeds


def parse_axis(name: str, value: Any, source: str) -> List[Any]:
    """A list of values for one axis from a YAML list, a comma-separated string or a scalar."""
    if name == "seed":
        return parse_seeds(value, source)
    items = value if isinstance(value, (list, tuple)) else [value]
    values: List[Any] = []
    for item in items:
        if isinstance(item, str) and name in ("dataset", "model", "remedy", "imbalance_ratio"):
            values.extend(part.strip() for part in item.split(",") if part.strip())
        else:
            values.append(item)
    if not values:
        raise HgimbError(f"{source}: '{AXIS_NAMES.get(name, name)}' lists no values")
    return [_coerce(name, v, source) for v in values]


def grid_from_mapping(values: Dict[str, Any], source: str) -> Grid:
    """A Grid from a mapping (a parsed grid YAML)."""
    if not isinstance(values, dict):
        raise HgimbError(f"{source}: a grid file must hold a mapping of keys to values")
    grid = Grid(source=source)
    valid = set(RunConfig.field_names())
    for key, value in values.items():
        key = str(key).replace("-", "_")
        if key == "out":
            grid.out = str(value)
        elif key == "dataset_overrides":
            grid.dataset_overrides = _overrides(value, source)
        elif key == "model_overrides":
            grid.model_overrides = _model_overrides(value, source)
        elif key in AXIS_ALIASES:
            grid.axes[AXIS_ALIASES[key]] = parse_axis(AXIS_ALIASES[key], value, f"{source}: {key}")
        elif key in valid:
            if isinstance(value, list):
                grid.axes[key] = parse_axis(key, value, f"{source}: {key}")
            else:
                if key in DICT_FIELDS and not isinstance(value, dict):
                    raise HgimbError(f"{source}: '{key}' must be a mapping of name: value")
                grid.fixed[key] = _coerce(key, value, source)
        else:
            raise HgimbError(f"{source}: unknown grid key '{key}'; valid keys: axes "
                             f"{', '.join(sorted(set(AXIS_ALIASES)))}, {', '.join(GRID_KEYS)}, "
                             f"or any RunConfig key ({', '.join(sorted(valid - set(AXIS_ALIASES)))})")
    _check_model_overrides(grid)
    return grid


def _check_model_overrides(grid: Grid) -> None:
    """A file's model override must name one of the file's models, spelt as its models axis
    spells it (an ensemble ``a+b`` is its own entry). A file that lists no models (they come
    from the command line) is not checked; there an override of a model not run is unused."""
    models = set(grid.axes.get("model", []))
    for override in grid.dataset_overrides.values():
        models |= set(override.get("model", []))
    stray = sorted(set(grid.model_overrides) - models) if models else []
    if stray:
        raise HgimbError(f"{grid.source}: model_overrides names '{stray[0]}', which is not among the grid's models "
                         f"{sorted(models)} (name a model as the models axis spells it)")


def _override_map(value: Any, source: str, name: str, what: str, keys_are: str, parse) -> Dict[str, Dict[str, Any]]:
    """``{entry: {key: value}}`` of ``dataset_overrides`` / ``model_overrides``: ``parse(key, item,
    where)`` -> ``(stored key, value)`` checks and converts each key of an entry."""
    if not isinstance(value, dict):
        raise HgimbError(f"{source}: '{name}' must map {what} names to mappings of keys")
    out: Dict[str, Dict[str, Any]] = {}
    for entry_name, keys in value.items():
        if not isinstance(keys, dict):
            raise HgimbError(f"{source}: {name}.{entry_name} must be a mapping of {keys_are}")
        entry: Dict[str, Any] = {}
        for key, item in keys.items():
            key = str(key).replace("-", "_")
            stored, converted = parse(key, item, f"{source}: {name}.{entry_name}.{key}")
            entry[stored] = converted
        out[str(entry_name)] = entry
    return out


def _overrides(value: Any, source: str) -> Dict[str, Dict[str, Any]]:
    """Per dataset: fixed keys and/or axes (a list value is an axis)."""
    valid = set(RunConfig.field_names())

    def parse(key: str, item: Any, where: str):
        if key in AXIS_ALIASES:
            if AXIS_ALIASES[key] == "dataset":
                raise HgimbError(f"{where}: a dataset override cannot change the dataset")
            return AXIS_ALIASES[key], parse_axis(AXIS_ALIASES[key], item, where)
        if key in valid:
            return key, parse_axis(key, item, where) if isinstance(item, list) else _coerce(key, item, where)
        raise HgimbError(f"{where}: unknown key; valid: RunConfig keys or the axes "
                         f"{', '.join(sorted(set(AXIS_ALIASES)))}")

    return _override_map(value, source, "dataset_overrides", "dataset", "RunConfig keys or axes", parse)


def _model_overrides(value: Any, source: str) -> Dict[str, Dict[str, Any]]:
    """Per model: fixed keys only (one value each; not the axes)."""
    valid = set(RunConfig.field_names()) - set(AXIS_ALIASES) - {"dataset"}

    def parse(key: str, item: Any, where: str):
        if key not in valid:
            raise HgimbError(f"{where}: not a key a model override can set; valid: RunConfig keys "
                             f"other than the axes {', '.join(sorted(set(AXIS_NAMES.values())))}")
        if isinstance(item, list):
            raise HgimbError(f"{where}: a model override sets one value (axes go at the top level)")
        if key in DICT_FIELDS and not isinstance(item, dict):
            raise HgimbError(f"{where}: must be a mapping of name: value")
        return key, _coerce(key, item, where)

    return _override_map(value, source, "model_overrides", "model", "RunConfig keys", parse)


def load_grid(path: str | Path) -> Grid:
    path = Path(path)
    if not path.is_file():
        raise HgimbError(f"grid file {path} not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise HgimbError(f"grid file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    grid = grid_from_mapping(values, str(path))
    if grid.out is None:
        grid.out = str(Path("bench") / path.stem)
    return grid


# ---------------------------------------------------------------------------- expansion
def run_id(cfg: RunConfig) -> str:
    """Stable id: a hash of the fields that can change the result (not out/quiet/plots/...) and
    differ from RunConfig's defaults. Fields at their default are left out, so a field added to
    RunConfig later (with a default that keeps the old behaviour) leaves every earlier id as it was."""
    return config_id(cfg.to_dict())


# A store row holds its run's config when it has these fields (the runner writes every field).
ROW_CONFIG_CORE = ("dataset", "model", "remedy", "seed", "epochs", "lr")


def config_id(values: Dict[str, Any]) -> str:
    """:func:`run_id` of a config given as a dict (a RunConfig's ``to_dict()`` or a store row;
    keys that are not RunConfig fields are ignored, missing fields count as their default)."""
    defaults = _default_values()
    kept = {}
    for key, value in values.items():
        if key in defaults and key not in PRESENTATION:
            text = _canonical(value)
            if text != defaults[key]:
                kept[key] = text
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


_DEFAULTS: Dict[str, str] = {}


def _default_values() -> Dict[str, str]:
    if not _DEFAULTS:
        _DEFAULTS.update({k: _canonical(v) for k, v in RunConfig().to_dict().items()})
    return _DEFAULTS


def run_name(cfg: RunConfig) -> str:
    dataset = cfg.dataset.replace(":", "_").replace("/", "_").strip("_")
    return f"{dataset}-{cfg.model}-{cfg.remedy}-r{cfg.imbalance_ratio:g}-s{cfg.seed}"


def _check_names(datasets, models, remedies, remedy_params: Dict[str, Any], source: str) -> None:
    """Every dataset/model/remedy name is known, before anything runs."""
    from ..data import dataset_loader
    from ..imbalance.registry import REMEDIES, _names
    from ..models import MODELS
    from ..models.registry import model_members

    for name in datasets:
        dataset_loader(name)  # raises 'unknown dataset ... valid names'
    for name in models:
        for member in model_members(name):  # an ensemble a+b: every member
            MODELS.get(member)
    for spec in remedies:
        for part in _names(spec):
            REMEDIES.get(part)
    declared = {k for spec in remedies for part in _names(spec) for k in REMEDIES.get(part).params}
    unused = sorted(set(remedy_params) - declared)
    if unused:
        raise HgimbError(f"{source}: remedy parameter(s) {unused} are declared by none of the remedies "
                         f"{list(remedies)}; their parameters: {sorted(declared) or 'none'}")


def expand(grid: Grid) -> List[RunConfig]:
    """Every run of the grid, validated (names, values, remedy parameters) before any runs.

    Order: dataset, imbalance ratio, model, remedy, other axes, seed. Duplicates are dropped.
    """
    from ..imbalance.registry import build_remedy, remedy_params

    axes = dict(grid.axes)
    if "dataset" not in axes:
        if "dataset" in grid.fixed:
            axes["dataset"] = [grid.fixed["dataset"]]
        else:
            raise HgimbError(f"{grid.source}: no datasets given; use --datasets a,b or 'datasets:' in the grid file")
    datasets = axes["dataset"]
    stray = sorted(set(grid.dataset_overrides) - set(datasets))
    if stray:
        raise HgimbError(f"{grid.source}: dataset_overrides names '{stray[0]}', which is not among the datasets "
                         f"{datasets}")
    fixed_axes = {k: v for k, v in grid.fixed.items() if k in AXIS_ALIASES.values()}
    base_fixed = {k: v for k, v in grid.fixed.items() if k not in AXIS_ALIASES.values()}
    configs: List[RunConfig] = []
    seen = set()
    for dataset in datasets:
        override = grid.dataset_overrides.get(dataset, {})
        dataset_axes = {k: [v] for k, v in fixed_axes.items()}
        dataset_axes.update({k: v for k, v in axes.items() if k != "dataset"})
        fixed = dict(base_fixed)
        for key, value in override.items():
            if key in AXIS_ALIASES.values() or isinstance(value, list):
                dataset_axes[key] = value if isinstance(value, list) else [value]
            else:
                fixed = _merge(fixed, {key: value})
        for key in [k for k in dataset_axes if k in fixed]:
            fixed.pop(key)  # an axis beats a fixed value of the same key
        defaults = RunConfig()
        for key in ("model", "remedy", "seed", "imbalance_ratio"):
            dataset_axes.setdefault(key, [getattr(defaults, key)])
        where = f"{grid.source} (dataset {dataset})"
        params = dict(fixed.get("remedy_params", {}))
        _check_names([dataset], dataset_axes["model"], dataset_axes["remedy"], params, where)
        for name, own in grid.model_overrides.items():
            if own.get("remedy_params") and name in dataset_axes["model"]:
                _check_names([], [], dataset_axes["remedy"], own["remedy_params"], f"{where}, model_overrides.{name}")
        order = ["imbalance_ratio", "model", "remedy"] + sorted(
            k for k in dataset_axes if k not in ("imbalance_ratio", "model", "remedy", "seed")) + ["seed"]
        for combo in itertools.product(*(dataset_axes[k] for k in order)):
            values = dict(fixed)
            values.update(zip(order, combo))
            own = grid.model_overrides.get(values["model"], {})
            values = _merge(values, {k: v for k, v in own.items() if k not in dataset_axes})
            values["dataset"] = dataset
            declared = remedy_params(values["remedy"])
            given = {**params, **own.get("remedy_params", {})}
            values["remedy_params"] = {k: v for k, v in given.items() if k in declared}
            values["quiet"] = True  # the run's own output goes to its log file
            values = {k: _coerce(k, v, where) for k, v in values.items()}
            cfg = RunConfig.from_dict(values, source=where)
            build_remedy(cfg.remedy, cfg.remedy_params)  # composition rules ('none+focal', ...)
            key = run_id(cfg)
            if key not in seen:
                seen.add(key)
                configs.append(cfg)
    return configs
