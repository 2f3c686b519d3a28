"""``python -m hgimb.advise``: which remedy for *this* graph, chosen on its validation split.

No fixed rule picks the best remedy on every graph (BENCHMARKS section 1: re-sampling wins on
Freebase, a post-hoc threshold on ACM), so this command measures instead of guessing:

1. a default shortlist with one or two remedies from every family (:data:`SHORTLIST`:
   re-weighting, re-balancing losses, samplers, synthesis, post-hoc, graph-specific), minus the
   ones that do not apply to the task (each remedy's own ``check``: ``tam`` needs a node task,
   ``pos-weight`` a binary one), or the user's ``--candidates``;
2. every candidate trained over several seeds *through the bench runner*
   (:func:`hgimb.benchkit.run_grid`: resumable store, local worker processes or Ray), one seed
   at a time for all candidates, within ``--budget`` (runs, or minutes: a seed round starts only
   while the rounds so far leave room for it; at least two seeds, the least a paired test needs);
3. a ranking by a validation metric (default macro-F1; PR-AUC for binary tasks) with the mean,
   sample std and a 95% t-interval over seeds, paired comparisons (same seed) against ``none``
   and against the top candidate (paired t-test and Wilcoxon signed-rank, scipy), and the set
   of candidates the paired t-test cannot tell from the top at ``--alpha``;
4. the winning configuration written as a YAML file ``python -m hgimb.train --config`` reruns.

Test metrics are never read: the store's ``test_*`` columns are dropped before ranking
(:func:`selection_frame`). Post-hoc remedies (``threshold``) are fitted on validation, so their
plain validation score is in-sample; their score here is the out-of-fold one the runner records
(:mod:`hgimb.benchkit.crossfit`). Under a ranking metric (PR-AUC, ROC-AUC) a post-hoc part
changes nothing (hgimb computes those from the raw model), so such candidates are skipped.

``python -m hgimb.train --remedy auto`` runs the same search (:func:`resolve_auto`) and then
trains and reports test metrics for the chosen remedy only.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .config import RunConfig
from .errors import HgimbError

AUTO = "auto"  # the --remedy value that hands the choice to this module
BASELINE = "none"
MIN_SEEDS = 2  # paired comparisons need two seeds
DEFAULT_SEEDS = "0-4"
ALPHA = 0.05


@dataclass(frozen=True)
class Candidate:
    spec: str  # --remedy syntax
    family: str
    when: str = "any"  # any | binary | multiclass: which tasks the default shortlist offers it to


# The default shortlist: the baseline plus one or two remedies per family. Data, not engine code;
# BENCHMARKS "Does selection work?" measures how well choosing among these on validation does.
SHORTLIST: Tuple[Candidate, ...] = (
    Candidate("none", "baseline"),
    Candidate("weighted", "re-weighting", "multiclass"),
    Candidate("pos-weight", "re-weighting", "binary"),
    Candidate("balanced-softmax", "re-balancing loss"),
    Candidate("ldam+drw", "re-balancing loss", "multiclass"),
    Candidate("oversample", "sampler", "multiclass"),
    Candidate("balanced-sampler", "sampler", "binary"),
    Candidate("smote", "synthesis"),
    Candidate("threshold", "post-hoc"),
    Candidate("tam", "graph-specific"),
    Candidate("graphens", "graph-specific", "multiclass"),  # best in all three Cora step tables (BENCHMARKS 3)
)
RANKING_METRICS = ("pr_auc", "pr_auc_macro", "roc_auc", "roc_auc_macro")  # no decision threshold involved


# ------------------------------------------------------------------------------- budget
def parse_budget(text: Optional[str]) -> Optional[Tuple[str, float]]:
    """``"40"`` -> ("runs", 40); ``"30m"``, ``"90s"``, ``"1.5h"`` -> ("seconds", ...); None -> None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(runs?|s|sec|m|min|h|hours?)?\s*", str(text).lower())
    if not match:
        raise HgimbError(f"--budget must be a number of runs (40) or a duration (30m, 90s, 1.5h), got '{text}'")
    value, unit = float(match.group(1)), match.group(2) or "runs"
    if value <= 0:
        raise HgimbError(f"--budget must be > 0, got '{text}'")
    if unit.startswith("run"):
        if value != int(value):
            raise HgimbError(f"--budget in runs must be a whole number, got '{text}'")
        return ("runs", int(value))
    scale = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "hours": 3600}[unit]
    return ("seconds", value * scale)


def seeds_for_run_budget(budget: int, n_candidates: int, seeds: Sequence[int]) -> List[int]:
    """The first seeds that fit ``budget`` runs of ``n_candidates`` each (at least MIN_SEEDS)."""
    n = min(len(seeds), budget // max(n_candidates, 1))
    if n < MIN_SEEDS:
        raise HgimbError(f"--budget {budget} runs gives {n} seed(s) for {n_candidates} candidates; paired "
                         f"comparisons need {MIN_SEEDS}: raise --budget to {MIN_SEEDS * n_candidates} or name fewer "
                         f"--candidates")
    return list(seeds[:n])


# ---------------------------------------------------------------------------- shortlist
def task_facts(cfg: RunConfig):
    """The task with its split (for remedy checks, class counts and the default metric)."""
    from .engine.run import load_task

    return load_task(cfg.replace(features="default", folds=0))


def shortlist(task, candidates: Optional[Sequence[str]] = None, metric: Optional[str] = None
              ) -> Tuple[List[Candidate], Dict[str, str]]:
    """(candidates that apply to ``task``, {skipped spec: why}). ``candidates``: the user's
    list (family "chosen"), else :data:`SHORTLIST` for the task's kind."""
    import torch

    from .imbalance.base import RemedyContext
    from .imbalance.registry import build_remedy

    binary = task.num_classes == 2
    if candidates:
        family = {c.spec: c.family for c in SHORTLIST}
        pool = [Candidate(spec, family.get(spec, "chosen")) for spec in dict.fromkeys(candidates)]
    else:
        pool = [c for c in SHORTLIST if c.when == "any" or c.when == ("binary" if binary else "multiclass")]
    train = task.split["train"]
    ctx = RemedyContext(num_classes=task.num_classes, train_index=train, train_labels=task.y[train], kind=task.kind,
                        class_names=list(task.class_names), task=task, device=torch.device("cpu"))
    kept: List[Candidate] = []
    skipped: Dict[str, str] = {}
    trained: Dict[str, str] = {}
    for cand in pool:
        remedy = build_remedy(cand.spec)  # unknown names and bad compositions fail here, with the reason
        try:
            for part in remedy.parts:
                part.check(ctx)
        except HgimbError as exc:
            skipped[cand.spec] = str(exc)
            continue
        if metric in RANKING_METRICS:
            # PR-AUC / ROC-AUC come from the raw model: a post-hoc part cannot change them
            base = "+".join(p.name for p in remedy.parts if not _posthoc_only(p)) or BASELINE
            if base in trained or (base != cand.spec and base in {c.spec for c in pool}):
                skipped[cand.spec] = (f"same {metric} as '{base}': post-hoc parts do not change ranking metrics")
                continue
            trained[base] = cand.spec
        kept.append(cand)
    if BASELINE not in {c.spec for c in kept}:
        kept.insert(0, Candidate(BASELINE, "baseline"))  # every comparison is paired against it
    return kept, skipped


def _posthoc_only(part) -> bool:
    hooks = ("loss", "train_index", "synthesize", "init_model", "setup")
    return (part.owns("adjust") or part.owns("apply")) and not any(part.owns(h) for h in hooks)


def default_metric(num_classes: int) -> str:
    return "pr_auc" if num_classes == 2 else "macro_f1"


# ------------------------------------------------------------------------------ scoring
def has_posthoc(spec: str) -> bool:
    from .imbalance.registry import build_remedy

    return build_remedy(spec).has_posthoc


def selection_frame(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per successful run: remedy, seed and ``score``, the validation metric the choice
    rests on (out-of-fold for post-hoc remedies under thresholded metrics). Test columns are
    dropped first, so nothing downstream can look at them."""
    from .benchkit.crossfit import PREFIX

    if frame.empty or "status" not in frame:
        return pd.DataFrame(columns=["remedy", "seed", "score"])
    frame = frame.loc[frame["status"] == "ok", [c for c in frame.columns if not c.startswith("test_")]].copy()
    binary = pd.to_numeric(frame.get("num_classes"), errors="coerce") == 2

    def column(name: str) -> pd.Series:
        return pd.to_numeric(frame[name], errors="coerce") if name in frame else pd.Series(np.nan, index=frame.index)

    if metric == "pr_auc":  # positive class for binary tasks, macro otherwise (as the leaderboard)
        plain = column("val_pr_auc").where(binary, column("val_pr_auc_macro"))
    elif metric == "roc_auc":
        plain = column("val_roc_auc").where(binary, column("val_roc_auc_macro"))
    else:
        plain = column(f"val_{metric}")
    score = plain
    if metric not in RANKING_METRICS:
        posthoc = frame["remedy"].map(has_posthoc).astype(bool)
        score = plain.where(~posthoc, column(f"{PREFIX}{metric}"))  # NaN if a post-hoc run lacks it
    return pd.DataFrame({"remedy": frame["remedy"].to_numpy(), "seed": frame["seed"].astype(int).to_numpy(),
                         "score": score.to_numpy(dtype=float)})


@dataclass
class Ranking:
    metric: str
    table: pd.DataFrame  # one row per candidate, best first
    seeds: List[int]
    winner: str
    tied: List[str]  # candidates the paired t-test cannot tell from the winner at alpha
    alpha: float
    dropped: Dict[str, str] = field(default_factory=dict)  # candidate -> why it is not ranked

    @property
    def distinguishable(self) -> bool:
        return not self.tied


def rank(scores: pd.DataFrame, candidates: Sequence[str], metric: str, alpha: float = ALPHA,
         baseline: str = BASELINE) -> Ranking:
    """Rank ``candidates`` by mean validation ``score`` over the seeds every ranked candidate
    finished (pairs need common seeds); paired tests against ``baseline`` and the top."""
    from scipy import stats

    from .benchkit.report import paired_test

    wide = scores.dropna(subset=["score"]).pivot_table(index="seed", columns="remedy", values="score", aggfunc="mean")
    dropped = {c: "no successful run with a validation score" for c in candidates if c not in wide.columns}
    ranked = [c for c in candidates if c in wide.columns]
    wide = wide[ranked].dropna()  # complete seeds only
    if len(wide) < MIN_SEEDS or not ranked:
        raise HgimbError(f"{len(wide)} seed(s) where every candidate finished; a ranking needs {MIN_SEEDS} "
                         f"(see the bench store's errors)")
    rows = []
    for cand in ranked:
        values = wide[cand].to_numpy()
        n = len(values)
        std = float(values.std(ddof=1)) if n > 1 else math.nan
        half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
        rows.append({"remedy": cand, "n": n, "mean": float(values.mean()), "std": std,
                     "ci_low": float(values.mean()) - half, "ci_high": float(values.mean()) + half})
    table = pd.DataFrame(rows)
    order = {c: i for i, c in enumerate(ranked)}  # ties in mean: the shortlist order decides
    table = table.assign(_order=table["remedy"].map(order)).sort_values(["mean", "_order"], ascending=[False, True])
    table = table.drop(columns="_order").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    top = table["remedy"].iloc[0]
    for target, label in ((baseline, "base"), (top, "top")):
        results = []
        for cand in table["remedy"]:
            if cand == target or target not in wide:
                results.append({f"delta_{label}": math.nan, f"p_{label}": math.nan, f"p_wilcoxon_{label}": math.nan})
                continue
            test = paired_test((wide[cand] - wide[target]).to_numpy())
            results.append({f"delta_{label}": test["delta"], f"p_{label}": test["p_ttest"],
                            f"p_wilcoxon_{label}": test["p_wilcoxon"]})
        table = pd.concat([table, pd.DataFrame(results)], axis=1)
    tied = [c for c, p in zip(table["remedy"], table["p_top"]) if c != top and not (p < alpha)]
    return Ranking(metric, table, [int(s) for s in wide.index], top, tied, alpha, dropped)


# ------------------------------------------------------------------------------- output
def _p(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def format_ranking(ranking: Ranking, families: Dict[str, str]) -> str:
    from .benchkit.report import LABELS

    label = LABELS.get(ranking.metric, ranking.metric)
    t = ranking.table
    width = max(len("remedy"), *(len(r) for r in t["remedy"]))
    fam_width = max(len("family"), *(len(families.get(r, "")) for r in t["remedy"]))
    lines = [f"{'rank':<4}  {'remedy':<{width}}  {'family':<{fam_width}}  {'val ' + label:>17}  {'95% CI':>15}  "
             f"{'Δ vs ' + BASELINE + ' (p)':>18}  {'Δ vs top (p)':>18}"]
    for _, row in t.iterrows():
        base = "–" if math.isnan(row["delta_base"]) else f"{row['delta_base']:+.3f} ({_p(row['p_base'])})"
        top = "–" if math.isnan(row["delta_top"]) else f"{row['delta_top']:+.3f} ({_p(row['p_top'])})"
        mark = "  tied" if row["remedy"] in ranking.tied else ""
        ci = "–" if math.isnan(row["ci_low"]) else f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        lines.append(f"{int(row['rank']):<4}  {row['remedy']:<{width}}  {families.get(row['remedy'], ''):<{fam_width}}  "
                     f"{row['mean']:>8.3f} ± {row['std']:<6.3f}  {ci:>15}  {base:>18}  {top:>18}{mark}")
    n = len(ranking.seeds)
    lines.append(f"mean ± sample std over {n} seeds {ranking.seeds}; 95% CI: t-interval of the mean; Δ and p: "
                 f"paired over seeds (p: two-sided paired t-test)")
    if ranking.tied:
        names = ", ".join([ranking.winner] + ranking.tied)
        lines.append(f"not distinguishable: {names} (paired t-test vs {ranking.winner}: p >= {ranking.alpha:g} with "
                     f"{n} seeds); {ranking.winner} is picked by its mean; more seeds (--seeds) may separate them")
    else:
        lines.append(f"{ranking.winner} is ahead of every other candidate (paired t-test p < {ranking.alpha:g})")
    if ranking.winner == BASELINE:
        lines.append(f"no remedy beats '{BASELINE}' on validation here")
    for cand, why in ranking.dropped.items():
        lines.append(f"not ranked: {cand}: {why}")
    return "\n".join(lines)


def winner_config(base: RunConfig, winner: str) -> Dict[str, Any]:
    """The RunConfig mapping of the chosen run (the base config with the winner as remedy)."""
    from .imbalance.registry import remedy_params

    declared = remedy_params(winner)
    values = base.to_dict()
    values.update(remedy=winner, remedy_params={k: v for k, v in base.remedy_params.items() if k in declared})
    for key in ("out", "quiet"):
        values.pop(key, None)
    RunConfig.from_dict(values, source="advise")  # must load back
    return values


def write_winner_yaml(path: Path, values: Dict[str, Any], ranking: Ranking, command: str) -> Path:
    import yaml

    header = [f"# Chosen by hgimb.advise on validation {ranking.metric} over seeds {ranking.seeds}",
              f"# (ranking: {', '.join(f'{r} {m:.3f}' for r, m in zip(ranking.table['remedy'], ranking.table['mean']))})."]
    if ranking.tied:
        header.append(f"# Not distinguishable from the winner (paired t-test, alpha {ranking.alpha:g}): "
                      f"{', '.join(ranking.tied)}.")
    header += [f"# Search: {command}", f"# Rerun: python -m hgimb.train --config {path}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump(values, sort_keys=False))
    return path


# --------------------------------------------------------------------------- the search
@dataclass
class Advice:
    ranking: Ranking
    candidates: List[Candidate]
    skipped: Dict[str, str]
    out: Path
    runs: int  # runs the ranking rests on
    seconds: float  # summed wall time of those runs (this call and earlier ones, from the store)
    config_path: Optional[Path] = None
    budget_note: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {"winner": self.ranking.winner, "metric": self.ranking.metric, "seeds": self.ranking.seeds,
                "tied_with_winner": self.ranking.tied, "distinguishable": self.ranking.distinguishable,
                "ranking": json.loads(self.ranking.table.to_json(orient="records")),
                "families": {c.spec: c.family for c in self.candidates}, "skipped": self.skipped,
                "runs": self.runs, "run_seconds": self.seconds, "store": str(self.out),
                "config": str(self.config_path) if self.config_path else None, "budget": self.budget_note}


def default_out(base: RunConfig) -> Path:
    from .benchkit.grid import run_id

    name = base.dataset.replace(":", "_").replace("/", "_").strip("_")
    return Path("bench") / "advise" / f"{name}-{base.model}-{run_id(base.replace(remedy=BASELINE, seed=0))}"


def configs_for(base: RunConfig, candidates: Sequence[str], seeds: Sequence[int]) -> List[RunConfig]:
    """The runs of a seed round, through the grid expansion every bench grid uses."""
    from .benchkit.grid import Grid, expand

    fixed = {k: v for k, v in base.to_dict().items() if k not in ("remedy", "seed", "out", "quiet")}
    return expand(Grid(axes={"remedy": list(candidates), "seed": list(seeds)}, fixed=fixed, source="advise"))


def advise(base: RunConfig, *, candidates: Optional[Sequence[str]] = None, seeds: Sequence[int] = (0, 1, 2, 3, 4),
           budget: Optional[Tuple[str, float]] = None, metric: Optional[str] = None, alpha: float = ALPHA,
           out: Optional[str | Path] = None, workers: Optional[int] = 1, backend: str = "local",
           address: Optional[str] = None, quiet: bool = False, echo=print) -> Advice:
    """Train the shortlist over seeds within ``budget`` through the bench runner and rank it on
    validation. ``budget``: ``("runs", n)``, ``("seconds", s)`` or None (every seed)."""
    from .benchkit import run_grid
    from .benchkit.report import METRICS, load_results

    task = task_facts(base.replace(remedy=BASELINE))
    metric = metric or default_metric(task.num_classes)
    if metric not in METRICS:
        raise HgimbError(f"--metric must be one of {', '.join(METRICS)}, got '{metric}'")
    kept, skipped = shortlist(task, candidates, metric)
    specs = [c.spec for c in kept]
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if len(seeds) < MIN_SEEDS:
        raise HgimbError(f"--seeds gives {len(seeds)} seed(s); paired comparisons need at least {MIN_SEEDS}")
    note = "every seed"
    if budget and budget[0] == "runs":
        seeds = seeds_for_run_budget(int(budget[1]), len(specs), seeds)
        note = f"{budget[1]:g} runs: {len(seeds)} seeds x {len(specs)} candidates"
    out = Path(out) if out else default_out(base)
    echo(f"advise: {base.dataset} / {base.model}, imbalance ratio {base.imbalance_ratio:g}: {len(specs)} candidates "
         f"({', '.join(specs)}), up to {len(seeds)} seeds, validation {metric}; store {out}")
    for spec, why in skipped.items():
        echo(f"  skipped {spec}: {why}")
    start = time.perf_counter()
    done: List[int] = []
    last_round = 0.0
    for i, seed in enumerate(seeds):
        if budget and budget[0] == "seconds" and len(done) >= MIN_SEEDS:
            elapsed = time.perf_counter() - start
            if elapsed + last_round > budget[1]:
                note = (f"{budget[1] / 60:g} min: stopped after {len(done)} seeds ({elapsed / 60:.1f} min spent, "
                        f"a seed round took {last_round / 60:.1f} min)")
                break
        round_start = time.perf_counter()
        # quiet: the runner's per-run lines show test scores, which a search must not display
        outcome = run_grid(configs_for(base, specs, [seed]), out, workers=workers, quiet=True, backend=backend,
                           address=address)
        if outcome.interrupted:
            raise KeyboardInterrupt
        if outcome.ran:
            last_round = time.perf_counter() - round_start
        done.append(seed)
        if not quiet:
            echo(f"  seed {seed}: {outcome.ran} ran ({outcome.ok} ok, {outcome.failed} failed), "
                 f"{outcome.skipped_done} already in the store, {(time.perf_counter() - round_start) / 60:.1f} min")
    else:
        if budget and budget[0] == "seconds":
            note = f"{budget[1] / 60:g} min: all {len(done)} seeds fitted"
    frame = load_results(out)
    mine = _rows_of(frame, configs_for(base, specs, done))
    ranking = rank(selection_frame(mine, metric), specs, metric, alpha=alpha)
    ok = mine[mine["status"] == "ok"]
    seconds = float(pd.to_numeric(ok.get("wall_seconds"), errors="coerce").sum()) if not ok.empty else 0.0
    return Advice(ranking, kept, skipped, out, runs=int(len(ok)), seconds=seconds, budget_note=note)


def _rows_of(frame: pd.DataFrame, configs: List[RunConfig]) -> pd.DataFrame:
    """The store rows of exactly these runs (a store may hold other searches' runs too)."""
    from .benchkit.grid import run_id

    ids = {run_id(c) for c in configs}
    if frame.empty or "run_id" not in frame:
        return frame
    return frame[frame["run_id"].isin(ids)].reset_index(drop=True)


def report(advice: Advice, echo=print) -> None:
    families = {c.spec: c.family for c in advice.candidates}
    echo(format_ranking(advice.ranking, families))
    echo(f"compute: {advice.runs} runs, {advice.seconds / 60:.1f} min of run wall time ({advice.budget_note})")


# ---------------------------------------------------------------------------------- CLI
def add_search_flags(parser: argparse.ArgumentParser) -> None:
    """The search's flags (``hgimb.train`` takes them too, for ``--remedy auto``)."""
    parser.add_argument("--budget", default=None,
                        help="runs (40) or wall time (30m, 90s, 1.5h) for the search; default: every seed of --seeds")
    parser.add_argument("--seeds", dest="search_seeds", default=DEFAULT_SEEDS, metavar="LIST",
                        help=f"seeds to train each candidate with, in order (default {DEFAULT_SEEDS}; "
                             f"at least {MIN_SEEDS})")
    parser.add_argument("--candidates", default=None,
                        help="comma-separated remedies to compare (default: the shortlist for the task)")
    parser.add_argument("--metric", default=None,
                        help="validation metric to rank by (default macro_f1; pr_auc for binary tasks)")
    parser.add_argument("--alpha", type=float, default=ALPHA, help=f"paired-test level for 'not distinguishable' "
                                                                    f"(default {ALPHA})")
    parser.add_argument("--advise-out", default=None, help="bench store of the search (default "
                                                           "bench/advise/<dataset>-<model>-<config hash>)")
    parser.add_argument("--workers", type=int, default=1, help="parallel runs (bench runner; default 1)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local", help="bench runner backend")
    parser.add_argument("--address", default=None, help="with --backend ray: the cluster address")


SEARCH_DEFAULTS = (("--budget", "budget", None), ("--seeds", "search_seeds", DEFAULT_SEEDS),
                   ("--candidates", "candidates", None), ("--metric", "metric", None), ("--alpha", "alpha", ALPHA),
                   ("--advise-out", "advise_out", None), ("--workers", "workers", 1), ("--backend", "backend", "local"),
                   ("--address", "address", None))


def search_from_args(base: RunConfig, args: argparse.Namespace, echo=print) -> Advice:
    from .benchkit.grid import parse_seeds

    if args.alpha is not None and not 0 < args.alpha < 1:
        raise HgimbError(f"--alpha must be in (0, 1), got {args.alpha}")
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()] if args.candidates else None
    return advise(base, candidates=candidates, seeds=parse_seeds(args.search_seeds, "--seeds"),
                  budget=parse_budget(args.budget), metric=args.metric, alpha=args.alpha, out=args.advise_out,
                  workers=args.workers, backend=args.backend, address=args.address, echo=echo)


def resolve_auto(cfg: RunConfig, args: argparse.Namespace, echo=print) -> RunConfig:
    """``--remedy auto`` (hgimb.train): run the search and return ``cfg`` with the winner;
    any other remedy: ``cfg`` unchanged."""
    if cfg.remedy != AUTO:
        given = [flag for flag, dest, default in SEARCH_DEFAULTS if getattr(args, dest, default) != default]
        if given:
            raise HgimbError(f"{given[0]} applies to --remedy auto only (this run's remedy is '{cfg.remedy}')")
        return cfg
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise HgimbError("--remedy auto under torchrun would search once per process: run python -m hgimb.advise "
                         "first, then torchrun ... -m hgimb.train --config <its best.yaml>")
    advice = search_from_args(cfg, args, echo=echo)
    report(advice, echo=echo)
    values = winner_config(cfg, advice.ranking.winner)
    path = write_winner_yaml(advice.out / "best.yaml", values, advice.ranking, "python -m hgimb.train --remedy auto")
    echo(f"--remedy auto -> {advice.ranking.winner} (chosen on validation; config {path}); training it on seed {cfg.seed}")
    return cfg.replace(remedy=advice.ranking.winner, remedy_params=values["remedy_params"])


def build_parser():
    from .cli import ArgumentParser, add_run_config_flags

    parser = ArgumentParser(
        prog="python -m hgimb.advise",
        description="Train a shortlist of remedies from every family over several seeds (bench runner: resumable, "
                    "parallel, Ray), rank them on the validation split with paired tests, and write the winner's "
                    "config. Never looks at the test split.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m hgimb.advise freebase --imbalance-ratio 10 --epochs 100 --budget 40\n"
               "  python -m hgimb.advise --config configs/acm.yaml --imbalance-ratio 20 --budget 30m\n"
               "  python -m hgimb.advise magnetic-tc --model cgcnn --threshold 600 --split stratified --dry-run\n"
               "  python -m hgimb.train --config configs/freebase.yaml --imbalance-ratio 10 --remedy auto --budget 40")
    parser.add_argument("dataset_arg", nargs="?", metavar="DATASET", help="dataset (or give --dataset / --config)")
    parser.add_argument("--config", help="YAML file of RunConfig keys (configs/*.yaml); flags override it")
    parser.add_argument("--write-config", default=None, help="where to write the winner's YAML "
                                                             "(default <store>/best.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="list the candidates and the runs; train nothing")
    parser.add_argument("--json", action="store_true", help="print the advice as JSON")
    add_search_flags(parser)
    add_run_config_flags(parser, skip=("remedy", "seed", "quiet", "out"))
    return parser


def _main(argv: Optional[List[str]] = None) -> int:
    from .cli import config_from_args

    args = build_parser().parse_args(argv)
    if args.dataset_arg:
        if getattr(args, "dataset", None) not in (None, args.dataset_arg):
            raise HgimbError(f"dataset given twice: '{args.dataset_arg}' and --dataset {args.dataset}")
        args.dataset = args.dataset_arg
    base = config_from_args(args).replace(quiet=True)
    if args.dry_run:
        from .benchkit.grid import parse_seeds
        from .benchkit.runner import plan

        task = task_facts(base.replace(remedy=BASELINE))
        metric = args.metric or default_metric(task.num_classes)
        candidates = [c.strip() for c in args.candidates.split(",") if c.strip()] if args.candidates else None
        kept, skipped = shortlist(task, candidates, metric)
        seeds = parse_seeds(args.search_seeds, "--seeds")
        budget = parse_budget(args.budget)
        if budget and budget[0] == "runs":
            seeds = seeds_for_run_budget(int(budget[1]), len(kept), seeds)
        out = Path(args.advise_out) if args.advise_out else default_out(base)
        planned = plan(configs_for(base, [c.spec for c in kept], seeds), out)
        print(f"metric: validation {metric}; seeds {seeds}; store {out}")
        for cand in kept:
            print(f"  {cand.spec:<20} {cand.family}")
        for spec, why in skipped.items():
            print(f"  skipped {spec}: {why}")
        todo = sum(p.state == "todo" for p in planned)
        print(f"{len(planned)} runs ({todo} to run, {len(planned) - todo} in the store)")
        return 0
    echo = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    advice = search_from_args(base, args, echo=echo)
    values = winner_config(base, advice.ranking.winner)
    path = Path(args.write_config) if args.write_config else advice.out / "best.yaml"
    command = "python -m hgimb.advise " + " ".join(sys.argv[1:] if argv is None else argv)
    advice.config_path = write_winner_yaml(path, values, advice.ranking, command)
    (advice.out / "advice.json").write_text(json.dumps(advice.to_dict(), indent=2, default=str) + "\n")
    if args.json:
        print(json.dumps(advice.to_dict(), indent=2, default=str))
        return 0
    report(advice)
    print(f"winner: --remedy {advice.ranking.winner}; config {advice.config_path}\n"
          f"rerun:  python -m hgimb.train --config {advice.config_path}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from .cli import guard

    return guard(_main)(argv)


if __name__ == "__main__":
    sys.exit(main())
