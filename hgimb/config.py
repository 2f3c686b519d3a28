"""RunConfig: every knob of a run. YAML files (``--config``) and CLI flags both map onto it;
flags given on the command line override the file."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from .errors import HgimbError
from .params import Param, Range


@dataclass
class RunConfig:
    # what
    dataset: str = "synthetic"
    model: str = "rgcn"
    remedy: str = "none"
    seed: int = 0
    data_root: Optional[str] = None  # default: $HGIMB_DATA or ./datasets
    dataset_options: Dict[str, Any] = field(default_factory=dict)  # loader-specific (synthetic size, ...)
    # split
    split: str = "official"  # official | full (official val/test, every other labelled item trains) | stratified | per-class
    val_fraction: float = 0.2  # share of the official training labels held out for validation
    train_fraction: float = 0.8  # stratified split of graph/unsplit tasks: train/val/test fractions
    test_fraction: float = 0.1
    per_class: Optional[int] = None  # per-class training count (split=per-class)
    imbalance_ratio: float = 1.0
    imbalance_type: str = "long-tail"  # long-tail | step | long-tail-remove (GraphSHA: low-degree nodes leave the graph)
    folds: int = 0  # >1: stratified K-fold (graph tasks)
    # crystal graphs
    threshold: Optional[float] = None  # real-valued target -> binary label target > threshold
    radius: float = 8.0
    max_neighbors: int = 12
    gaussian_step: float = 0.2
    skip_bad: bool = False
    # model
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    dropout: float = 0.5
    features: str = "default"  # default | metapath2vec
    metapaths: Optional[str] = None
    model_options: Dict[str, Any] = field(default_factory=dict)
    # optimisation
    epochs: int = 200
    lr: float = 0.01
    weight_decay: float = 5e-4
    optimizer: str = "adam"  # adam | adamw | sgd
    patience: int = 50
    monitor: str = "macro_f1"  # validation metric for early stopping / best checkpoint
    scheduler: str = "none"  # none | plateau (ReduceLROnPlateau on validation loss, as GraphENS/TAM/GraphSHA)
    batch_size: Optional[int] = None  # graph tasks: graphs per batch; node tasks: seeds per batch
    fanout: str = "10,10"
    amp: str = "off"  # off | on | bf16 | fp16: mixed precision for the forward pass (hgimb/engine/precision.py)
    sparse_embeddings: str = "auto"  # auto | on | off: row-sparse gradients + lazy Adam for featureless id tables (hgimb/engine/optim.py)
    # remedies
    remedy_params: Dict[str, Any] = field(default_factory=dict)
    # running
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    out: Optional[str] = None
    quiet: bool = False
    plots: bool = True
    num_workers: int = 0

    def run_name(self) -> str:
        dataset = self.dataset.replace(":", "_").replace("/", "_").strip("_")
        return f"{dataset}-{self.model}-{self.remedy}-s{self.seed}"

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.run_name()

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The config as YAML that ``--config`` reads back, each key commented with where its
        value came from (flag / config file / model default / default) when that is known."""
        provenance = getattr(self, "provenance", {})
        lines = []
        for key, value in self.to_dict().items():
            text = yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=False).rstrip("\n").split("\n")
            if key in provenance:
                text[0] += f"  # {provenance[key]}"
            lines.extend(text)
        return "\n".join(lines) + "\n"

    def replace(self, **changes) -> "RunConfig":
        out = dataclasses.replace(self, **changes)
        if hasattr(self, "provenance"):
            object.__setattr__(out, "provenance", {**self.provenance, **{k: "set in code" for k in changes}})
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "config",
                  sources: Optional[Dict[str, str]] = None) -> "RunConfig":
        """A validated RunConfig from the values a user set. Keys left unset take the named
        model's recommended values (``register_model(defaults=...)``), else the global defaults
        above. ``provenance`` records where each value came from: ``sources[key]`` (or
        ``source``) for set keys, ``model default (<model>)`` or ``default`` for the others."""
        if not isinstance(values, dict):
            raise HgimbError(f"{source}: expected a mapping of RunConfig keys to values, got {type(values).__name__}")
        valid = set(cls.field_names())
        unknown = sorted(set(values) - valid)
        if unknown:
            raise HgimbError(f"{source}: unknown key(s) {unknown}; valid keys: {', '.join(sorted(valid))}")
        model = values.get("model", cls.model)
        recommended = _model_defaults(model) if isinstance(model, str) else {}
        merged = dict(values)
        provenance = {key: (sources or {}).get(key, source) for key in values}
        for key, value in recommended.items():
            if key in DICT_FLAGS and isinstance(merged.get(key, {}), dict):
                given = merged.get(key, {})
                merged[key] = {**value, **given}
                if set(value) - set(given):
                    provenance[key] = f"model default ({model})" if not given else f"{provenance[key]} + model default ({model})"
            elif key not in values:
                merged[key] = value
                provenance[key] = f"model default ({model})"
        cfg = cls(**merged).validate(source)
        object.__setattr__(cfg, "provenance", {name: provenance.get(name, "default") for name in cls.field_names()})
        return cfg

    @staticmethod
    def read_yaml(path: str | Path) -> Dict[str, Any]:
        """The mapping a YAML config file holds (not yet validated)."""
        path = Path(path)
        if not path.is_file():
            raise HgimbError(f"config file {path} not found")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except UnicodeDecodeError:
            raise HgimbError(f"config file {path} is not a text file (not UTF-8); give a YAML file of RunConfig keys") from None
        except yaml.YAMLError as exc:
            raise HgimbError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise HgimbError(f"config file {path} must hold a mapping of keys to values")
        return values

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Optional[Dict[str, Any]] = None) -> "RunConfig":
        values = cls.read_yaml(path)
        values.update(overrides or {})
        return cls.from_dict(values, source=str(path))

    def validate(self, source: Optional[str] = None) -> "RunConfig":
        """Check every field's type and range (one place: :data:`FIELD_RULES` and the field
        annotations); raise HgimbError naming the flag, the value and what is allowed."""
        prefix = f"{source}: " if source and source != "command line" else ""
        try:
            _check_types(self)
            for name, rule in FIELD_RULES.items():
                if hasattr(self, name):
                    rule.check(_flag(name), getattr(self, name))
        except HgimbError as exc:
            raise HgimbError(prefix + str(exc)) from None
        if self.imbalance_type not in ("long-tail", "step", "long-tail-remove"):
            raise HgimbError(f"{prefix}--imbalance-type must be 'long-tail', 'step' or 'long-tail-remove', "
                             f"got '{self.imbalance_type}'")
        if self.split not in ("official", "full", "stratified", "per-class"):
            raise HgimbError(f"{prefix}--split must be official, full, stratified or per-class, got '{self.split}'")
        if self.scheduler not in ("none", "plateau"):
            raise HgimbError(f"{prefix}--scheduler must be none or plateau, got '{self.scheduler}'")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise HgimbError(f"{prefix}--optimizer must be adam, adamw or sgd, got '{self.optimizer}'")
        if self.amp not in ("off", "on", "bf16", "fp16"):
            raise HgimbError(f"{prefix}--amp must be off, on, bf16 or fp16, got '{self.amp}'")
        if self.sparse_embeddings not in ("auto", "on", "off"):
            raise HgimbError(f"{prefix}--sparse-embeddings must be auto, on or off, got '{self.sparse_embeddings}'")
        if self.folds not in (0,) and self.folds < 2:
            raise HgimbError(f"{prefix}--folds must be 0 (no cross-validation) or >= 2, got {self.folds}")
        parts = [p.strip() for p in str(self.fanout).split(",")]
        if not all(re.fullmatch(r"-1|\d+", p) for p in parts):
            raise HgimbError(f"{prefix}--fanout '{self.fanout}' must be comma-separated integers, one per hop "
                             "(neighbours per node and relation; -1 = all, 0 = none), e.g. --fanout 10,10")
        if self.train_fraction + self.test_fraction >= 1:
            raise HgimbError(f"{prefix}--train-fraction + --test-fraction must leave room for validation "
                             f"(< 1), got {self.train_fraction} + {self.test_fraction}")
        return self


# The range of every numeric RunConfig field (types come from the annotations).
FIELD_RULES: Dict[str, Range] = {
    "seed": Range(0, 2**32 - 1),  # numpy's seed range
    "val_fraction": Range(0, 1, low_open=True, high_open=True),
    "train_fraction": Range(0, 1, low_open=True, high_open=True),
    "test_fraction": Range(0, 1, low_open=True, high_open=True),
    "per_class": Range(1),
    "imbalance_ratio": Range(1),
    "threshold": Range(),
    "radius": Range(0, low_open=True),
    "max_neighbors": Range(1),
    "gaussian_step": Range(0, low_open=True),
    "hidden": Range(1),
    "layers": Range(1),
    "heads": Range(1),
    "dropout": Range(0, 1, high_open=True),
    "epochs": Range(1),
    "lr": Range(0, low_open=True),
    "weight_decay": Range(0),
    "patience": Range(0),
    "batch_size": Range(1),
    "num_workers": Range(0),
}


# RunConfig fields that are also dataset-loader parameters, with their one-line help: a loader
# that declares one (with :func:`field_param`, so flag and loader share default, range and help)
# receives the field's value (hgimb.data.registry.load_configured).
LOADER_FIELDS: Dict[str, str] = {
    "threshold": "crystal datasets: binary label = target > THRESHOLD",
    "radius": "crystal graphs: neighbour search radius in Angstrom",
    "max_neighbors": "crystal graphs: nearest neighbours kept per atom",
    "gaussian_step": "crystal graphs: spacing and width of the Gaussian edge-length expansion",
    "skip_bad": "skip unreadable rows/structures with a warning instead of stopping",
    "quiet": "no progress output",
}


def field_param(name: str) -> Param:
    """The RunConfig field ``name`` as a declared loader parameter: its default, type, range
    (:data:`FIELD_RULES`) and help (:data:`LOADER_FIELDS`)."""
    f = next(f for f in dataclasses.fields(RunConfig) if f.name == name)
    kind, optional = _field_type(f.type)
    return Param(name, kind, f.default, LOADER_FIELDS.get(name, ""), FIELD_RULES.get(name), none=optional)


def check_fields(**values) -> None:
    """Check values of RunConfig fields given outside a RunConfig (e.g. ``diagnose --seed``) against
    :data:`FIELD_RULES`; raise HgimbError naming the flag."""
    for name, value in values.items():
        FIELD_RULES[name].check(_flag(name), value)


def _model_defaults(model: str) -> Dict[str, Any]:
    from .models.registry import model_defaults  # the models declare them; imported when first needed

    return model_defaults(model)


DICT_FLAGS = {"remedy_params": "--remedy-param", "dataset_options": "--dataset-option", "model_options": "--model-option"}


def _flag(name: str) -> str:
    return DICT_FLAGS.get(name, "--" + name.replace("_", "-"))


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a mapping of name: value"}


def _field_type(annotation) -> tuple:
    """(python type, optional) from a field annotation such as 'Optional[float]'."""
    text = str(annotation).replace("typing.", "")
    optional = text.startswith("Optional[")
    text = text[len("Optional["):-1] if optional else text
    base = {"int": int, "float": float, "str": str, "bool": bool}.get(text, dict if text.startswith("Dict") else None)
    return base, optional


def _check_types(cfg: "RunConfig") -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        kind, optional = _field_type(f.type)
        if kind is None or (value is None and optional):
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            setattr(cfg, f.name, value)
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not ok:
            shown = repr(value) if not isinstance(value, (list, dict)) else type(value).__name__
            raise HgimbError(f"{f.name} ({_flag(f.name)}) must be {_TYPE_NAMES[kind]}, got {shown}")
