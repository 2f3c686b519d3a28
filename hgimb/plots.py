"""Confusion matrix, PR curves and training curves as PNG files (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(report: Dict, class_names: List[str], path: Path, title: str = "") -> None:
    """Confusion matrix normalised by true class (rows sum to 1), raw counts annotated."""
    plt = _plt()
    counts = np.asarray(report["confusion_matrix"], dtype=float)
    row_sums = counts.sum(1, keepdims=True)
    normed = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    size = max(4.0, 0.6 * len(class_names) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(normed, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(j, i, f"{normed[i, j]:.2f}\n({int(counts[i, j])})", ha="center", va="center",
                    fontsize=8, color="white" if normed[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of true class")
    ax.set_title(title or "confusion matrix (row-normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pr_curves_png(y_true: Sequence[int], prob: np.ndarray, class_names: List[str], path: Path,
                  title: str = "") -> None:
    """One-vs-rest precision-recall curve per class, with average precision in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _plt()
    y_true = np.asarray(y_true)
    fig, ax = plt.subplots(figsize=(6, 5))
    for c, name in enumerate(class_names):
        positives = (y_true == c).astype(int)
        if positives.sum() == 0 or positives.sum() == len(positives):
            continue
        precision, recall, _ = precision_recall_curve(positives, prob[:, c])
        ap = average_precision_score(positives, prob[:, c])
        ax.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f}, prior {positives.mean():.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title or "precision-recall (one vs rest)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def training_curves_png(history: List[Dict], path: Path, monitor: str = "macro_f1", best_epoch: int = None) -> None:
    """Training loss and validation metrics per epoch."""
    plt = _plt()
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], label="train loss")
    if "val_loss" in history[0]:
        ax_loss.plot(epochs, [row["val_loss"] for row in history], label="val loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for key in ("val_macro_f1", "val_balanced_accuracy", "val_accuracy"):
        if key in history[0]:
            ax_val.plot(epochs, [row[key] for row in history], label=key)
    if best_epoch is not None:
        for ax in (ax_loss, ax_val):
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("validation metric")
    ax_val.legend()
    fig.suptitle(f"training curves (dashed: best epoch by val {monitor})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
