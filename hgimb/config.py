"""RunConfig: every knob of a run. YAML files (``--config``) and CLI flags both map onto it;
flags given on the command line override the file."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from .errors import HgimbError


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
    split: str = "official"  # official | stratified (fractions) | per-class (counts)
    val_fraction: float = 0.2  # share of the official training labels held out for validation
    train_fraction: float = 0.8  # stratified split of graph/unsplit tasks: train/val/test fractions
    test_fraction: float = 0.1
    per_class: Optional[int] = None  # per-class training count (split=per-class)
    imbalance_ratio: float = 1.0
    imbalance_type: str = "long-tail"  # long-tail | step
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
    batch_size: Optional[int] = None  # graph tasks: graphs per batch; node tasks: seeds per batch
    fanout: str = "10,10"
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

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "config") -> "RunConfig":
        valid = set(cls.field_names())
        unknown = sorted(set(values) - valid)
        if unknown:
            raise HgimbError(f"{source}: unknown key(s) {unknown}; valid keys: {', '.join(sorted(valid))}")
        return cls(**values).validate()

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Optional[Dict[str, Any]] = None) -> "RunConfig":
        path = Path(path)
        if not path.is_file():
            raise HgimbError(f"config file {path} not found")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise HgimbError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise HgimbError(f"config file {path} must hold a mapping of keys to values")
        values.update(overrides or {})
        return cls.from_dict(values, source=str(path))

    def validate(self) -> "RunConfig":
        if not (self.imbalance_ratio >= 1):
            raise HgimbError(f"--imbalance-ratio must be >= 1, got {self.imbalance_ratio}")
        if self.imbalance_type not in ("long-tail", "step"):
            raise HgimbError(f"--imbalance-type must be 'long-tail' or 'step', got '{self.imbalance_type}'")
        if self.split not in ("official", "stratified", "per-class"):
            raise HgimbError(f"--split must be official, stratified or per-class, got '{self.split}'")
        if not 0 < self.val_fraction < 1:
            raise HgimbError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("epochs", "hidden", "layers", "heads"):
            if getattr(self, name) < 1:
                raise HgimbError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise HgimbError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            raise HgimbError(f"--lr must be > 0, got {self.lr}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise HgimbError(f"--optimizer must be adam, adamw or sgd, got '{self.optimizer}'")
        if self.batch_size is not None and self.batch_size < 1:
            raise HgimbError(f"--batch-size must be >= 1, got {self.batch_size}")
        return self
