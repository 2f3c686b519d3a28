"""hgimb.advise: remedy selection on validation through the bench runner; train --remedy auto."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from hgimb import advise as adv
from hgimb.config import RunConfig
from hgimb.errors import HgimbError

SMALL = {"num_movies": 300}
TINY = ["--dataset", "synthetic", "--dataset-option", "num_movies=300", "--model", "rgcn", "--imbalance-ratio", "10",
        "--epochs", "6", "--hidden", "16", "--patience", "6"]
CANDIDATES = "none,weighted,threshold"


# ------------------------------------------------------------------------------ budget
@pytest.mark.parametrize("text, expected", [
    ("40", ("runs", 40)), ("12 runs", ("runs", 12)), ("30m", ("seconds", 1800.0)), ("90s", ("seconds", 90.0)),
    ("1.5h", ("seconds", 5400.0)), (None, None),
])
def test_parse_budget(text, expected):
    assert adv.parse_budget(text) == expected


@pytest.mark.parametrize("text", ["ten", "0", "2.5", "-3m"])
def test_parse_budget_rejects(text):
    with pytest.raises(HgimbError, match="--budget"):
        adv.parse_budget(text)


def test_run_budget_gives_whole_seed_rounds():
    assert adv.seeds_for_run_budget(40, 8, [0, 1, 2, 3, 4]) == [0, 1, 2, 3, 4]
    assert adv.seeds_for_run_budget(25, 8, [0, 1, 2, 3, 4]) == [0, 1, 2]
    with pytest.raises(HgimbError, match="raise --budget to 16"):
        adv.seeds_for_run_budget(15, 8, [0, 1, 2, 3, 4])


# ----------------------------------------------------------------------------- ranking
def scores_frame(table):
    return pd.DataFrame([{"remedy": r, "seed": s, "score": v} for r, values in table.items()
                         for s, v in enumerate(values)])


def test_rank_orders_by_mean_and_pairs_by_seed():
    table = {"none": [0.40, 0.42, 0.38, 0.41, 0.39],
             "a": [0.60, 0.62, 0.58, 0.61, 0.59],
             "b": [0.50, 0.51, 0.49, 0.52, 0.50]}
    ranking = adv.rank(scores_frame(table), ["none", "a", "b"], "macro_f1")
    assert list(ranking.table["remedy"]) == ["a", "b", "none"]
    assert ranking.winner == "a" and ranking.distinguishable and ranking.seeds == [0, 1, 2, 3, 4]
    row = ranking.table.set_index("remedy")
    assert row.loc["a", "delta_base"] == pytest.approx(0.2)
    assert row.loc["b", "delta_top"] == pytest.approx(np.mean(np.array(table["b"]) - table["a"]))
    assert row.loc["a", "ci_low"] < 0.6 < row.loc["a", "ci_high"]
    text = adv.format_ranking(ranking, {"a": "fam"})
    assert "a is ahead of every other candidate" in text


def test_rank_says_when_the_top_is_not_distinguishable():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, size=5)
    table = {"none": list(0.3 + noise), "a": list(0.50 + rng.normal(0, 0.05, 5)), "b": list(0.50 + rng.normal(0, 0.05, 5))}
    ranking = adv.rank(scores_frame(table), ["none", "a", "b"], "macro_f1")
    assert not ranking.distinguishable and ranking.tied == [r for r in ("a", "b") if r != ranking.winner]
    assert "not distinguishable" in adv.format_ranking(ranking, {})


def test_rank_uses_complete_seeds_and_needs_two():
    table = {"none": [0.4, 0.4, 0.5], "a": [0.6, 0.7]}  # a has no seed 2
    ranking = adv.rank(scores_frame(table), ["none", "a"], "macro_f1")
    assert ranking.seeds == [0, 1]
    with pytest.raises(HgimbError, match="needs 2"):
        adv.rank(scores_frame({"none": [0.4], "a": [0.6]}), ["none", "a"], "macro_f1")


def store_rows():
    rows = []
    for seed in range(3):
        for remedy, val, cf, test in (("none", 0.40, None, 0.41), ("weighted", 0.55, None, 0.50),
                                      ("threshold", 0.70, 0.52, 0.90)):
            row = {"run_id": f"{remedy}{seed}", "status": "ok", "remedy": remedy, "seed": seed, "num_classes": 3,
                   "val_macro_f1": val + 0.01 * seed, "test_macro_f1": test}
            if cf is not None:
                row["val_crossfit_macro_f1"] = cf + 0.01 * seed
            rows.append(row)
    return pd.DataFrame(rows)


def test_selection_never_sees_test_and_scores_posthoc_out_of_fold():
    frame = store_rows()
    scores = adv.selection_frame(frame, "macro_f1")
    assert not any(c.startswith("test_") for c in scores.columns)
    ranking = adv.rank(scores, ["none", "weighted", "threshold"], "macro_f1")
    # threshold's in-sample 0.70 would win; out of fold (0.52) it loses to weighted (0.55)
    assert ranking.winner == "weighted"
    shuffled = frame.assign(test_macro_f1=np.random.default_rng(1).permutation(frame["test_macro_f1"].to_numpy()))
    assert adv.rank(adv.selection_frame(shuffled, "macro_f1"), ["none", "weighted", "threshold"],
                    "macro_f1").table.equals(ranking.table)
    # a post-hoc run without its out-of-fold score is not ranked on its in-sample one
    missing = frame.drop(columns="val_crossfit_macro_f1")
    ranking = adv.rank(adv.selection_frame(missing, "macro_f1"), ["none", "weighted", "threshold"], "macro_f1")
    assert "threshold" in ranking.dropped and ranking.winner == "weighted"


def test_crossfit_predictions_fit_on_other_folds():
    from hgimb.benchkit.crossfit import crossfit_predictions
    from hgimb.imbalance.registry import build_remedy

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [60, 30, 10])
    logits = torch.as_tensor(rng.normal(size=(100, 3)) + 1.5 * np.eye(3)[y], dtype=torch.float64)
    logits[:, 0] += 1.0  # a biased model: a threshold helps
    part = build_remedy("threshold").parts[0]
    pred = crossfit_predictions(logits, y, [part], folds=5, seed=0)
    assert pred.shape == (100,) and set(pred) <= {0, 1, 2}
    assert part.offsets is None  # the run's own fitted remedy is left alone
    in_sample = build_remedy("threshold").parts[0]
    in_sample.adjust(logits, torch.as_tensor(y))
    from sklearn.metrics import f1_score
    fitted = f1_score(y, in_sample.apply(logits).argmax(1).numpy(), average="macro")
    assert f1_score(y, pred, average="macro") <= fitted + 1e-9  # out of fold cannot beat the in-sample optimum


def fake_task(num_classes, kind):
    y = torch.tensor([0] * 20 + [1] * 5 + ([2] * 3 if num_classes == 3 else []))
    return SimpleNamespace(num_classes=num_classes, kind=kind, y=y, split={"train": torch.arange(len(y))},
                           class_names=[str(c) for c in range(num_classes)], name="fake", data=None)


def test_shortlist_covers_every_family_and_applies_checks():
    kept, skipped = adv.shortlist(fake_task(3, "graph"), metric="macro_f1")
    specs = [c.spec for c in kept]
    assert specs[0] == "none" and "pos-weight" not in specs and "threshold" in specs
    assert "tam" in skipped and "node task" in skipped["tam"]  # the remedy's own check
    assert {c.family for c in kept} >= {"baseline", "re-weighting", "re-balancing loss", "sampler", "synthesis",
                                        "post-hoc"}
    kept, skipped = adv.shortlist(fake_task(2, "graph"), metric="pr_auc")
    specs = [c.spec for c in kept]
    assert "pos-weight" in specs and "weighted" not in specs
    assert "threshold" in skipped and "post-hoc" in skipped["threshold"]  # same PR-AUC as none
    kept, _ = adv.shortlist(fake_task(2, "graph"), ["weighted", "threshold"], metric="macro_f1")
    assert [c.spec for c in kept] == ["none", "weighted", "threshold"]  # none is always the baseline
    with pytest.raises(HgimbError, match="unknown remedy"):
        adv.shortlist(fake_task(3, "node"), ["no-such-remedy"])


# ------------------------------------------------------------------- end to end (tiny)
@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("advise") / "store"
    base = RunConfig(dataset="synthetic", dataset_options=SMALL, model="rgcn", imbalance_ratio=10, epochs=6,
                     hidden=16, patience=6, quiet=True)
    lines = []
    advice = adv.advise(base, candidates=CANDIDATES.split(","), seeds=[0, 1, 2], budget=("runs", 6), out=out,
                        echo=lines.append)
    return base, advice, out, lines


def test_advise_runs_through_the_bench_store(searched):
    from hgimb.benchkit import load_results

    base, advice, out, lines = searched
    assert advice.runs == 6 and advice.ranking.seeds == [0, 1]  # 6 runs = 3 candidates x 2 seeds
    rows = load_results(out)
    assert len(rows) == 6 and (rows["status"] == "ok").all()
    threshold = rows[rows["remedy"] == "threshold"]
    assert threshold["val_crossfit_macro_f1"].notna().all()  # the runner's cross-fitting hook
    assert rows.loc[rows["remedy"] == "none", "val_crossfit_macro_f1"].isna().all()
    assert not any("test macro" in line or "test:" in line for line in lines)  # no test scores shown
    # resumable: the same search again trains nothing
    again = adv.advise(base, candidates=CANDIDATES.split(","), seeds=[0, 1, 2], budget=("runs", 6), out=out,
                       echo=lines.append)
    assert "0 ran" in lines[-1] and again.ranking.table.equals(advice.ranking.table)


def test_time_budget_stops_between_seed_rounds(searched):
    base, advice, out, _ = searched
    lines = []
    timed = adv.advise(base, candidates=CANDIDATES.split(","), seeds=[0, 1, 2], budget=("seconds", 0.001), out=out,
                       echo=lines.append)
    # at least two seed rounds always run (a paired test needs them); then the budget stops the search
    assert timed.ranking.seeds == [0, 1] and "stopped after 2 seeds" in timed.budget_note
    assert not any("seed 2" in line for line in lines)


def test_winner_yaml_reruns(searched, tmp_path):
    base, advice, out, _ = searched
    values = adv.winner_config(base, advice.ranking.winner)
    path = adv.write_winner_yaml(tmp_path / "best.yaml", values, advice.ranking, "test")
    cfg = RunConfig.from_yaml(path)
    assert cfg.remedy == advice.ranking.winner and cfg.dataset_options == SMALL and cfg.epochs == 6
    assert path.read_text().startswith("# Chosen by hgimb.advise on validation macro_f1")


def test_cli_and_train_remedy_auto(searched, tmp_path, capsys):
    from hgimb import train

    _, advice, out, _ = searched
    assert adv.main(TINY + ["--candidates", CANDIDATES, "--seeds", "0-1", "--advise-out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["winner"] == advice.ranking.winner and result["runs"] == 6
    assert {"ranking", "tied_with_winner", "distinguishable", "config"} <= set(result)
    assert (out / "best.yaml").is_file() and (out / "advice.json").is_file()
    code = train.main(TINY + ["--remedy", "auto", "--candidates", CANDIDATES, "--seeds", "0-1",
                              "--advise-out", str(out), "--out", str(tmp_path / "run"), "--no-plots"])
    text = capsys.readouterr().out
    assert code == 0
    assert f"--remedy auto -> {advice.ranking.winner}" in text
    assert text.count("test:") == 1  # test metrics of the chosen remedy only
    chosen = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert chosen["remedy"] == advice.ranking.winner


@pytest.mark.parametrize("argv, fragment", [
    (TINY + ["--remedy", "weighted", "--budget", "10"], "--budget applies to --remedy auto only"),
    (TINY + ["--remedy", "auto", "--seeds", "0"], "at least 2"),
    (TINY + ["--remedy", "auto", "--budget", "5", "--candidates", CANDIDATES], "raise --budget"),
    (TINY + ["--remedy", "auto", "--metric", "nope", "--candidates", CANDIDATES], "--metric must be one of"),
])
def test_bad_input_exits_2_with_one_line(argv, fragment, capsys, tmp_path):
    from hgimb import train

    assert train.main(argv + ["--advise-out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err
