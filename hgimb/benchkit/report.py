"""From the results store to a leaderboard: mean ± std over seeds, ranks, paired tests against
the baseline remedy, markdown/CSV tables and a gain heatmap.

Reusable from scripts (e.g. to write a BENCHMARKS.md section)::

    from hgimb.benchkit import load_results, leaderboard, markdown_table
    board = leaderboard(load_results("bench/hgb"), metric="macro_f1", split="test")
    text = markdown_table(board[board.dataset == "acm"])

Conventions: std is the sample standard deviation over seeds (ddof=1, pandas' default); the
paired comparison pairs each remedy with the baseline on the seeds both finished; higher is
better for every metric reported here.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..errors import HgimbError, warn_data
from ..metrics import HEADLINE
from .grid import PRESENTATION
from .store import read_rows, store_path

COLUMNS = ("macro_f1", "balanced_accuracy", "minority_recall", "pr_auc")
LABELS = {"macro_f1": "macro-F1", "balanced_accuracy": "balanced acc.", "minority_recall": "minority recall",
          "pr_auc": "PR-AUC", "accuracy": "accuracy", "micro_f1": "micro-F1", "weighted_f1": "weighted F1",
          "g_mean": "G-mean", "pr_auc_macro": "PR-AUC (macro)", "roc_auc_macro": "ROC-AUC (macro)",
          "roc_auc": "ROC-AUC"}
METRICS = tuple(HEADLINE) + ("minority_recall", "pr_auc", "roc_auc")
BASE_KEYS = ("dataset", "imbalance_ratio", "model")
WILCOXON_MIN_N = 6  # two-sided exact signed-rank: smallest p = 2 / 2**n, >= 0.0625 for n <= 5


def load_results(path: str | Path, all_rows: bool = False) -> pd.DataFrame:
    """The store as a DataFrame, one row per run (its latest record) unless ``all_rows``.
    ``path``: a bench directory or its ``results.jsonl``."""
    file = store_path(path)
    if not file.is_file():
        raise HgimbError(f"no results store at {file}; run 'python -m hgimb.bench run ... --out {file.parent}' first")
    rows = read_rows(file)
    frame = pd.DataFrame(rows)
    if frame.empty or all_rows:
        return frame
    return frame.drop_duplicates("run_id", keep="last").reset_index(drop=True)


def _hashable(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def group_keys(frame: pd.DataFrame) -> List[str]:
    """dataset, imbalance_ratio, model, plus every other config field that varies in ``frame``
    (so that runs that differ in, say, ``hidden`` are never averaged together)."""
    skip = set(BASE_KEYS) | {"seed", "remedy", "remedy_params"} | set(PRESENTATION)
    extra = []
    for name in RunConfig.field_names():
        if name in skip or name not in frame:
            continue
        if frame[name].map(_hashable).nunique(dropna=False) > 1:
            extra.append(name)
    return [k for k in BASE_KEYS if k in frame] + extra


def remedy_labels(frame: pd.DataFrame) -> pd.Series:
    """The remedy column, with its parameters appended (``focal [gamma=1.0]``) when one remedy
    was run with several parameter settings. ``remedy_params`` is not a group key: a grid's
    parameters reach only the remedies that declare them, so they differ between remedies."""
    if "remedy_params" not in frame:
        return frame["remedy"]
    text = frame["remedy_params"].map(
        lambda p: ", ".join(f"{k}={v}" for k, v in sorted(p.items())) if isinstance(p, dict) else "")
    if (text.groupby(frame["remedy"]).nunique() > 1).any():
        return frame["remedy"].where(text == "", frame["remedy"] + " [" + text + "]")
    return frame["remedy"]


def _metric_values(ok: pd.DataFrame, metric: str, split: str) -> pd.Series:
    if metric == "pr_auc":  # the headline PR-AUC: positive class for binary tasks, macro otherwise
        binary = pd.to_numeric(ok.get("num_classes"), errors="coerce") == 2
        positive = pd.to_numeric(ok.get(f"{split}_pr_auc", pd.Series(np.nan, index=ok.index)), errors="coerce")
        macro = pd.to_numeric(ok.get(f"{split}_pr_auc_macro", pd.Series(np.nan, index=ok.index)), errors="coerce")
        return positive.where(binary, macro)
    column = f"{split}_{metric}"
    if column not in ok:
        return pd.Series(np.nan, index=ok.index, dtype=float)
    values = pd.to_numeric(ok[column], errors="coerce")
    garbled = ok[column].notna() & values.isna()
    if garbled.any():
        example = ok.loc[garbled, column].iloc[0]
        run = ok.loc[garbled, "run_id"].iloc[0] if "run_id" in ok else "?"
        warn_data(f"{column} is not a number in {int(garbled.sum())} row(s) of the store (e.g. run {run}: "
                  f"{str(example)[:40]!r}); those runs count as missing for it (shown as –, and in its n)")
    return values


def paired_test(diff: Sequence[float]) -> Dict[str, float]:
    """Mean paired difference, two-sided Wilcoxon signed-rank and paired t-test p-values."""
    from scipy import stats

    diff = np.asarray(diff, dtype=float)
    n = len(diff)
    out = {"n_paired": n, "delta": float(diff.mean()) if n else math.nan, "p_wilcoxon": math.nan,
           "p_ttest": math.nan, "wilcoxon_min_p": 2.0 / 2 ** n if n else math.nan}
    if n < 2:
        return out
    if np.allclose(diff, 0.0):
        out["p_wilcoxon"] = out["p_ttest"] = 1.0
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out["p_wilcoxon"] = float(stats.wilcoxon(diff).pvalue)
        except ValueError:
            pass
        out["p_ttest"] = float(stats.ttest_1samp(diff, 0.0).pvalue)  # = ttest_rel(remedy, baseline)
    return out


def leaderboard(frame: pd.DataFrame, metric: str = "macro_f1", split: str = "test",
                baseline: str = "none") -> pd.DataFrame:
    """One row per (dataset, imbalance_ratio, model, [other varying fields], remedy): ``n`` runs,
    ``<m>_mean`` / ``<m>_std`` for macro-F1, balanced accuracy, minority recall, PR-AUC (and
    ``metric``), ``rank`` by ``metric`` within the group, and the paired comparison with
    ``baseline``: ``n_paired``, ``delta`` (mean of remedy - baseline), ``p_wilcoxon``,
    ``p_ttest``, ``wilcoxon_min_p`` (the smallest p the Wilcoxon test can give with n_paired)."""
    if split not in ("val", "test"):
        raise HgimbError(f"--split must be 'val' or 'test', got '{split}'")
    if metric not in METRICS:
        raise HgimbError(f"--metric must be one of {', '.join(METRICS)}, got '{metric}'")
    if frame.empty or "status" not in frame:
        raise HgimbError("the results store holds no runs")
    ok = frame[frame["status"] == "ok"].copy()
    for key in BASE_KEYS + ("remedy", "seed"):
        lacking = ok[key].isna() if key in ok else pd.Series(True, index=ok.index)
        if lacking.any():
            run = ok.loc[lacking, "run_id"].iloc[0] if "run_id" in ok else "?"
            raise HgimbError(f"run {run} in the results store has no '{key}' field ({int(lacking.sum())} such row(s)); "
                             "the row was not written by hgimb.bench: delete its line, then rerun the grid")
    if ok.empty:
        raise HgimbError(f"the results store holds no successful runs ({len(frame)} failed); see the logs")
    ok["remedy"] = remedy_labels(ok)
    if baseline != "none" and baseline not in set(ok["remedy"]):
        raise HgimbError(f"--baseline '{baseline}' has no successful runs; remedies in the store: "
                         f"{', '.join(sorted(set(ok['remedy'])))}")
    metrics = list(COLUMNS) + ([metric] if metric not in COLUMNS else [])
    for name in metrics:
        ok[f"_{name}"] = _metric_values(ok, name, split)
    keys = group_keys(ok)
    for key in keys:
        ok[key] = ok[key].map(_hashable)
    grouped = ok.groupby(keys + ["remedy"], dropna=False, sort=True)
    stats = grouped[[f"_{m}" for m in metrics]].agg(["mean", "std", "count"])
    stats.columns = [f"{name[1:]}_{stat}" for name, stat in stats.columns]
    board = stats.reset_index()
    board.insert(len(keys) + 1, "n", grouped.size().to_numpy())
    for name in metrics:  # runs whose value is defined; fewer than n when a metric was NaN/None
        board[f"{name}_count"] = board[f"{name}_count"].astype(int)
    board["rank"] = board.groupby(keys, dropna=False)[f"{metric}_mean"].rank(ascending=False, method="min")

    comparisons = []
    for group, rows in ok.groupby(keys, dropna=False, sort=False):
        base = rows[rows["remedy"] == baseline].groupby("seed")[f"_{metric}"].mean()
        for remedy, own in rows.groupby("remedy"):
            result = {"n_paired": 0, "delta": math.nan, "p_wilcoxon": math.nan, "p_ttest": math.nan,
                      "wilcoxon_min_p": math.nan}
            if remedy != baseline and not base.empty:
                paired = pd.concat([own.groupby("seed")[f"_{metric}"].mean(), base], axis=1, join="inner").dropna()
                result = paired_test((paired.iloc[:, 0] - paired.iloc[:, 1]).to_numpy())
            group = group if isinstance(group, tuple) else (group,)
            comparisons.append({**dict(zip(keys, group)), "remedy": remedy, **result})
    board = board.merge(pd.DataFrame(comparisons), on=keys + ["remedy"], how="left")
    board["n_paired"] = board["n_paired"].fillna(0).astype(int)
    board["rank"] = board["rank"].astype("Int64")
    board = board.sort_values(keys + ["rank", "remedy"], kind="stable").reset_index(drop=True)
    board.attrs.update(metric=metric, split=split, baseline=baseline, keys=keys, metrics=metrics)
    return board


# ----------------------------------------------------------------------------- markdown
def _num(value: Any, digits: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _group_title(keys: Sequence[str], values: Sequence[Any]) -> str:
    parts = []
    for key, value in zip(keys, values):
        if key == "dataset" or key == "model":
            parts.append(str(value))
        elif key == "imbalance_ratio":
            parts.append(f"imbalance ratio {float(value):g}")
        else:
            parts.append(f"{key}={value}")
    return " · ".join(parts)


def markdown_table(board: pd.DataFrame, metric: Optional[str] = None, digits: int = 3,
                   heading_level: int = 3, notes: bool = True) -> str:
    """Markdown for a leaderboard (or any subset of its rows): one heading and table per group,
    best mean per column in bold, then the footnotes. Paste-ready for a markdown file."""
    if board.empty:
        return "_no runs_\n"
    metric = metric or board.attrs.get("metric", "macro_f1")
    baseline = board.attrs.get("baseline", "none")
    split = board.attrs.get("split", "test")
    keys = [k for k in board.attrs.get("keys", list(BASE_KEYS)) if k in board]
    metrics = [m for m in board.attrs.get("metrics", list(COLUMNS)) if f"{m}_mean" in board]
    header = (["remedy"] + [LABELS.get(m, m) for m in metrics] + ["n", "rank", f"Δ {LABELS.get(metric, metric)} vs {baseline}",
              "p (Wilcoxon)", "p (t-test)"])
    lines: List[str] = []
    few = partial = False
    for group, rows in board.groupby(keys, dropna=False, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        best = {m: rows[f"{m}_mean"].round(digits).max() for m in metrics}
        lines += [f"{'#' * heading_level} {_group_title(keys, group)} ({split})", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, row in rows.iterrows():
            cells = [f"`{row['remedy']}`"]
            for m in metrics:
                mean, std = row[f"{m}_mean"], row[f"{m}_std"]
                text = _num(mean, digits) + ("" if pd.isna(std) else f" ± {_num(std, digits)}")
                count = row.get(f"{m}_count", row["n"])
                if count < row["n"]:  # a mean over fewer runs than n says: say so in the cell
                    text += f" (n={int(count)})"
                    partial = True
                if not pd.isna(mean) and round(mean, digits) == best[m]:
                    text = f"**{text}**"
                cells.append(text)
            wilcoxon = _p(row["p_wilcoxon"])
            if row["remedy"] != baseline and 0 < row["n_paired"] < WILCOXON_MIN_N:
                wilcoxon += " †"
                few = True
            cells += [str(int(row["n"])), "–" if pd.isna(row["rank"]) else str(int(row["rank"])),
                      "–" if row["remedy"] == baseline else _num(row["delta"], digits, signed=True)
                      + (f" (n={int(row['n_paired'])})" if row["n_paired"] else ""),
                      "–" if row["remedy"] == baseline else wilcoxon,
                      "–" if row["remedy"] == baseline else _p(row["p_ttest"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if notes:
        lines.append(f"Mean ± sample std over seeds of the {split} split; **bold**: best mean in the column; "
                     f"rank by {LABELS.get(metric, metric)}; PR-AUC: positive class for binary tasks, macro "
                     f"one-vs-rest otherwise. Δ and p: paired over the seeds both `{baseline}` and the remedy "
                     "finished (two-sided Wilcoxon signed-rank test; paired t-test).")
        if partial:
            lines.append("")
            lines.append("(n=k) in a cell: the metric is undefined (NaN/None) in some runs, so its mean and std "
                         "cover k of the group's n runs.")
        if few:
            lines.append("")
            lines.append(f"† fewer than {WILCOXON_MIN_N} paired seeds: the two-sided Wilcoxon signed-rank test "
                         "cannot reach p < 0.05 (its smallest possible p is 2/2^n, 0.0625 at n = 5), so its p says "
                         "little here; read the effect size and the t-test, and run more seeds.")
        lines.append("")
    return "\n".join(lines)


def frame_markdown(frame: pd.DataFrame, digits: int = 2, index: bool = True) -> str:
    """A plain markdown table for any small DataFrame (pandas' to_markdown needs tabulate)."""
    columns = ([frame.index.name or ""] if index else []) + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for i, label in enumerate(frame.index):
        cells = [str(label)] if index else []
        for j in range(frame.shape[1]):
            value = frame.iat[i, j]  # per cell: a row would upcast ints to floats
            cells.append(_num(value, digits) if isinstance(value, (float, np.floating)) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rank_summary(board: pd.DataFrame) -> pd.DataFrame:
    """Mean rank of each remedy over the (dataset, imbalance ratio) groups, one column per model
    (and other varying field), plus the overall mean rank and the number of first places."""
    keys = board.attrs.get("keys", list(BASE_KEYS))
    panel = [k for k in keys if k not in ("dataset", "imbalance_ratio")]
    ranks = board.assign(rank=board["rank"].astype(float))
    if panel:
        label = ranks[panel].astype(str).agg(" · ".join, axis=1)
        table = ranks.assign(_panel=label).pivot_table(index="remedy", columns="_panel", values="rank", aggfunc="mean")
        table.columns.name = None
    else:
        table = pd.DataFrame(index=sorted(ranks["remedy"].unique()))
    table["mean rank"] = ranks.groupby("remedy")["rank"].mean()
    table["first places"] = ranks.assign(first=ranks["rank"] == 1).groupby("remedy")["first"].sum().astype(int)
    table.index.name = "remedy"
    return table.sort_values("mean rank")


# ------------------------------------------------------------------------------- figure
def gain_heatmap(board: pd.DataFrame, path: str | Path) -> Optional[Path]:
    """Heatmap of the mean paired gain over the baseline: remedies × datasets (× ratio), one
    panel per model. Returns None (no file) when no remedy has a baseline to compare with."""
    gains = board[board["n_paired"] > 0]
    if gains.empty:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    metric = board.attrs.get("metric", "macro_f1")
    keys = board.attrs.get("keys", list(BASE_KEYS))
    panel_keys = [k for k in keys if k not in ("dataset", "imbalance_ratio")]
    several_ratios = gains["imbalance_ratio"].nunique() > 1 if "imbalance_ratio" in gains else False
    gains = gains.assign(_column=gains["dataset"].astype(str) + (
        "\nratio " + gains["imbalance_ratio"].map(lambda r: f"{float(r):g}") if several_ratios else ""))
    gains = gains.assign(_panel=gains[panel_keys].astype(str).agg(" · ".join, axis=1) if panel_keys else "")
    columns = list(dict.fromkeys(gains.sort_values(["dataset"] + (["imbalance_ratio"] if several_ratios else []))["_column"]))
    remedies = list(gains.groupby("remedy")["delta"].mean().sort_values(ascending=False).index)
    panels = list(dict.fromkeys(gains["_panel"]))
    limit = float(np.nanmax(np.abs(gains["delta"].to_numpy(dtype=float)))) or 1e-6
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    width = max(4.0, 1.0 + 0.9 * len(columns)) * len(panels) + 1.5
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 1.2 + 0.45 * len(remedies)), squeeze=False)
    image = None
    for ax, name in zip(axes[0], panels):
        table = (gains[gains["_panel"] == name].pivot_table(index="remedy", columns="_column", values="delta",
                                                             aggfunc="mean").reindex(index=remedies, columns=columns))
        values = table.to_numpy(dtype=float)
        image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", norm=norm, aspect="auto")
        ax.set_facecolor("0.85")
        ax.set_xticks(range(len(columns)), columns, fontsize=8)
        ax.set_yticks(range(len(remedies)), remedies if ax is axes[0][0] else [""] * len(remedies), fontsize=8)
        ax.set_title(name, fontsize=9)
        for (i, j), value in np.ndenumerate(values):
            if not np.isnan(value):
                ax.text(j, i, f"{value:+.3f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(value) > 0.6 * limit else "black")
    fig.colorbar(image, ax=axes[0].tolist(), label=f"mean {LABELS.get(metric, metric)} gain over "
                                                   f"'{board.attrs.get('baseline', 'none')}' ({board.attrs.get('split', 'test')})")
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------- report
def write_report(out: str | Path, metric: str = "macro_f1", split: str = "test",
                 baseline: str = "none") -> Dict[str, Any]:
    """Write ``leaderboard.md``, ``leaderboard.csv`` and ``leaderboard.png`` beside the store;
    returns ``{"markdown", "board", "md", "csv", "png"}`` (png None without a baseline)."""
    frame = load_results(out)
    board = leaderboard(frame, metric=metric, split=split, baseline=baseline)
    directory = store_path(out).parent
    failed = int((frame["status"] != "ok").sum())
    png = gain_heatmap(board, directory / "leaderboard.png")
    parts = [f"# Leaderboard: {directory}", "",
             f"{int((frame['status'] == 'ok').sum())} successful runs"
             + (f", {failed} failed (not included; see results.jsonl and logs/)" if failed else "")
             + f"; {split} split; ranked by {LABELS.get(metric, metric)}.", ""]
    if board["rank"].notna().any() and board.groupby(board.attrs["keys"], dropna=False).ngroups > 1:
        parts += [f"## Mean rank by {LABELS.get(metric, metric)} over datasets and imbalance ratios", "",
                  frame_markdown(rank_summary(board)), ""]
    if png is not None:
        parts += [f"![{LABELS.get(metric, metric)} gain over {baseline}](leaderboard.png)", ""]
    parts += ["## Per dataset, imbalance ratio and model", "", markdown_table(board, heading_level=3)]
    text = "\n".join(parts)
    (directory / "leaderboard.md").write_text(text)
    board.to_csv(directory / "leaderboard.csv", index=False)
    return {"markdown": text, "board": board, "md": directory / "leaderboard.md",
            "csv": directory / "leaderboard.csv", "png": png}
