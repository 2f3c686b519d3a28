"""One run, end to end: config -> Task -> training -> report -> run directory.

Everything the CLIs do is here, callable from Python: ``run_experiment(RunConfig(...))``.
Under torchrun every rank runs this; rank 0 alone writes the run directory.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from ..config import LOADER_FIELDS, RunConfig
from ..data.registry import load_configured
from ..data.task import Task
from ..errors import warn_data
from ..metrics import classification_report, minority_class
from . import distributed
from .allocator import tune_allocator
from .outdir import atomic_dir, check_out_dir
from .trainer import Trainer, TrainOutcome, resolve_device


def load_task(cfg: RunConfig) -> Task:
    """Load the dataset, add requested input features and apply the configured split."""
    from ..data.splits import make_split

    task = load_configured(cfg.dataset, cfg.data_root, cfg.dataset_options,
                           **{name: getattr(cfg, name) for name in LOADER_FIELDS})
    if not (cfg.folds and cfg.folds > 1):  # folds are split in run_experiment
        task = make_split(task, split=cfg.split, val_fraction=cfg.val_fraction, train_fraction=cfg.train_fraction,
                          test_fraction=cfg.test_fraction, per_class=cfg.per_class,
                          imbalance_ratio=cfg.imbalance_ratio, imbalance_type=cfg.imbalance_type, seed=cfg.seed)
    # features after the split: a structure a feature set drops (--skip-bad) leaves its split
    # without moving any other item, so runs with and without features share their splits
    if cfg.features != "default":
        task = add_features(task, cfg)
    return task


def add_features(task: Task, cfg: RunConfig) -> Task:
    """``--features a+b``: each name is an entry of the feature-set registry (hgimb.features)."""
    from ..features import add_features as apply_feature_sets

    return apply_feature_sets(task, cfg)


def _binary_threshold(outcome: TrainOutcome) -> Optional[float]:
    """Decision threshold on p(class 1) implied by the post-hoc calibration (additive offsets)."""
    shift = outcome.remedy.apply(torch.zeros(1, 2)) if outcome.remedy.has_posthoc else torch.zeros(1, 2)
    delta = float(shift[0, 1] - shift[0, 0])
    return float(torch.sigmoid(torch.tensor(-delta)))


def build_reports(task: Task, outcome: TrainOutcome) -> Dict[str, Dict]:
    probs = torch.softmax(outcome.logits, 1).numpy()
    pred = outcome.adjusted_logits.argmax(1).numpy()
    items = outcome.items.numpy()
    threshold = _binary_threshold(outcome) if task.is_binary else None
    item_type = task.item_type().numpy()
    minority = minority_class(task.train_class_counts().numpy())
    reports = {}
    offset = 0
    for part in ("train", "val", "test"):
        n = task.split[part].numel()
        rows = slice(offset, offset + n)
        offset += n
        if part == "train":
            continue
        y = task.y[items[rows]].numpy()
        report = classification_report(y, probs[rows], task.class_names, pred=pred[rows], threshold=threshold,
                                       minority=minority)
        if report.get("missing_classes"):
            warn_data(f"the {part} split has no samples of class(es) {', '.join(map(repr, report['missing_classes']))}: "
                      "their recall and F1 are undefined and macro averages cover the other classes only"
                      + (" (binary task: macro-F1 and balanced accuracy are not reported)" if task.is_binary else ""))
        if len(task.target_types) > 1:
            types = item_type[items[rows]]
            report["per_node_type"] = {
                node_type: classification_report(y[types == k], probs[rows][types == k], task.class_names,
                                                 pred=pred[rows][types == k], threshold=threshold, minority=minority)
                for k, node_type in enumerate(task.target_types)
            }
        reports[part] = report
    return reports


def metrics_dict(task: Task, cfg: RunConfig, outcome: TrainOutcome) -> Dict[str, Any]:
    reports = build_reports(task, outcome)
    return {
        "dataset": cfg.dataset, "model": cfg.model, "remedy": outcome.remedy.name, "seed": cfg.seed,
        "num_classes": task.num_classes, "class_names": list(task.class_names),
        "train_class_counts": task.train_class_counts().tolist(),
        "best_epoch": outcome.best_epoch, "epochs_run": outcome.epochs_run,
        "world_size": outcome.world_size,
        "train_seconds": round(outcome.train_seconds, 4),
        "seconds_per_epoch": round(outcome.seconds_per_epoch, 5),
        "val": reports["val"], "test": reports["test"],
        "posthoc": outcome.fitted,
        "split": {"type": cfg.split, "imbalance_ratio": cfg.imbalance_ratio, "imbalance_type": cfg.imbalance_type,
                  "sizes": {p: int(task.split[p].numel()) for p in ("train", "val", "test")}},
    }


@dataclass
class RunResult:
    config: RunConfig
    task: Task
    outcome: TrainOutcome
    metrics: Dict[str, Any]
    out_dir: Optional[Path]


def _progress(cfg: RunConfig):
    if cfg.quiet or not sys.stderr.isatty() or not distributed.current().is_main:
        return None
    from tqdm.auto import tqdm

    return lambda it: tqdm(it, desc=f"{cfg.model}/{cfg.remedy}", unit="epoch", leave=False, dynamic_ncols=True)


def train_task(task: Task, cfg: RunConfig) -> RunResult:
    """Build the model, then train it the way it declares: ``fit``/``predict_proba`` (fitted
    models, :mod:`hgimb.engine.fitted`) or gradient steps (:class:`Trainer`)."""
    from .ensemble import is_ensemble, member_summary, train_ensemble
    from .fitted import FitTrainer, fits_directly
    from .trainer import build_from_config

    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def train_one(task: Task, cfg: RunConfig) -> TrainOutcome:
        model, remedy = build_from_config(cfg, task)
        if fits_directly(model):
            return FitTrainer(task, model, remedy, cfg).fit()
        return Trainer(task, model, remedy, cfg, progress=_progress(cfg)).fit()

    if is_ensemble(cfg.model):  # --model a+b: soft vote of the members (hgimb.engine.ensemble)
        outcome, members = train_ensemble(task, cfg, train_one)
        metrics = metrics_dict(task, cfg, outcome)
        metrics["members"] = [member_summary(member, result, build_reports(task, result))
                              for member, result in members]
    else:
        outcome = train_one(task, cfg)
        metrics = metrics_dict(task, cfg, outcome)
    if device.type == "cuda":  # the peak of tensors this run allocated (data, model, training, evaluation)
        metrics["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return RunResult(cfg, task, outcome, metrics, None)


def run_experiment(cfg: RunConfig, write: bool = True) -> RunResult:
    """Load, split, train, evaluate; write the run directory atomically when ``write``."""
    cfg.validate()
    tune_allocator()
    # torchrun: join the process group its environment describes (a no-op for one process)
    world = distributed.init(resolve_device(cfg.device))
    if write and world.is_main:
        check_out_dir(cfg.out_dir())  # refuse a file / foreign directory / unwritable place before training
    if cfg.folds and cfg.folds > 1:
        return run_folds(cfg, write)
    task = distributed.main_first(lambda: load_task(cfg))
    result = train_task(task, cfg)
    if write and world.is_main:
        result.out_dir = write_run_dir(result, cfg.out_dir())
    return result


def run_folds(cfg: RunConfig, write: bool = True) -> RunResult:
    """Stratified K-fold: one run per fold (``fold<k>/``) and a summary with mean ± std."""
    from ..data.splits import kfold_splits

    task = distributed.main_first(lambda: load_task(cfg))
    folds = kfold_splits(task, cfg.folds, seed=cfg.seed)
    results = [train_task(fold_task, cfg) for fold_task in folds]
    summary = summarize_folds(cfg, [r.metrics for r in results])
    last = results[-1]
    result = RunResult(cfg, last.task, last.outcome, summary, None)
    if write and distributed.current().is_main:
        def extra(tmp: Path) -> None:
            for k, fold_result in enumerate(results):
                _write_run_files(fold_result, tmp / f"fold{k}")
        result.out_dir = atomic_dir(cfg.out_dir(), lambda tmp: (_write_json(tmp / "metrics.json", summary),
                                                                 (tmp / "config.yaml").write_text(cfg.to_yaml()),
                                                                 extra(tmp)))
    return result


def summarize_folds(cfg: RunConfig, fold_metrics) -> Dict[str, Any]:
    from ..metrics import HEADLINE

    def stats(part: str):
        out = {}
        keys = list(HEADLINE) + ["minority_recall", "pr_auc", "roc_auc"]
        for key in keys:
            values = [m[part].get(key) for m in fold_metrics if m[part].get(key) is not None]
            if values:
                out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
        return out

    first = fold_metrics[0]
    return {"dataset": cfg.dataset, "model": cfg.model, "remedy": first["remedy"], "seed": cfg.seed,
            "folds": len(fold_metrics), "world_size": first.get("world_size", 1),
            "num_classes": first["num_classes"], "class_names": first["class_names"],
            "val": stats("val"), "test": stats("test"),
            "per_fold": [{"best_epoch": m["best_epoch"], "test": {k: m["test"].get(k) for k in ("macro_f1", "pr_auc", "roc_auc", "pr_auc_macro")}} for m in fold_metrics]}


# ---------------------------------------------------------------------- run directory
def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _write_run_files(result: RunResult, directory: Path) -> None:
    task, outcome, cfg = result.task, result.outcome, result.config
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(cfg.to_yaml())
    _write_json(directory / "metrics.json", result.metrics)
    with open(directory / "history.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(outcome.history[0]))
        writer.writeheader()
        writer.writerows(outcome.history)
    probs = torch.softmax(outcome.logits, 1).numpy()
    pred = outcome.adjusted_logits.argmax(1).numpy()
    items = outcome.items.numpy()
    ids = np.asarray(task.ids())[items]
    parts = np.concatenate([[p] * task.split[p].numel() for p in ("train", "val", "test")])
    with open(directory / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "split", "true", "predicted"] + [f"prob_{c}" for c in task.class_names])
        true = task.y[outcome.items].numpy()
        for row in zip(ids, parts, true, pred, *probs.T.round(6)):
            writer.writerow(row)
    torch.save({"state_dict": outcome.model.state_dict(), "config": cfg.to_dict(),
                "class_names": task.class_names, "posthoc": outcome.fitted}, directory / "model.pt")
    if cfg.plots:
        from .. import plots

        plot_dir = directory / "plots"
        plot_dir.mkdir(exist_ok=True)
        n_train, n_val = task.split["train"].numel(), task.split["val"].numel()
        test_rows = slice(n_train + n_val, None)
        plots.confusion_matrix_png(result.metrics["test"], task.class_names, plot_dir / "confusion_matrix.png",
                                   title=f"{cfg.dataset} {cfg.model} {outcome.remedy.name}: test")
        plots.pr_curves_png(task.y[outcome.items[test_rows]].numpy(), probs[test_rows], task.class_names,
                            plot_dir / "pr_curves.png", title=f"{cfg.dataset} {cfg.model} {outcome.remedy.name}: test PR")
        plots.training_curves_png(outcome.history, plot_dir / "training_curves.png", cfg.monitor, outcome.best_epoch)


def write_run_dir(result: RunResult, out: Path) -> Path:
    return atomic_dir(out, lambda tmp: _write_run_files(result, tmp))
