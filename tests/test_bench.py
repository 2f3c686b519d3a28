"""python -m hgimb.bench: grid expansion, the resumable store, parallel determinism, the report."""
import json
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hgimb.bench import main
from hgimb.config import RunConfig
from hgimb.benchkit import expand, grid_from_mapping, leaderboard, load_results, markdown_table, run_id, write_report
from hgimb.benchkit import runner, worker
from hgimb.benchkit.store import _sigint_held, read_rows
from hgimb.errors import HgimbError

TINY = {"datasets": ["synthetic"], "dataset_options": {"num_movies": 300}, "epochs": 3, "hidden": 8}
FLAGS = ["--datasets", "synthetic", "--dataset-option", "num_movies=300", "--epochs", "3", "--hidden", "8"]


def tiny_grid(**axes):
    return expand(grid_from_mapping({**TINY, **axes}, "test grid"))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """mlp/rgcn × none/weighted/pos-weight × seeds 0-2, in this process. pos-weight refuses the
    5-class task, so 6 of the 18 runs fail."""
    out = tmp_path_factory.mktemp("bench")
    configs = tiny_grid(models=["mlp", "rgcn"], remedies=["none", "weighted", "pos-weight"], seeds="0-2")
    outcome = runner.run_grid(configs, out, workers=1, quiet=True)
    return out, configs, outcome


def raw_rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_every_run_recorded_and_a_crash_does_not_stop_the_grid(bench):
    out, configs, outcome = bench
    rows = raw_rows(out)
    assert len(configs) == 18 and len(rows) == 18
    assert {r["run_id"] for r in rows} == {run_id(c) for c in configs}
    assert (outcome.ok, outcome.failed, outcome.exit_code) == (12, 6, 1)
    for row in rows:
        assert (out / row["log"]).is_file()
        if row["remedy"] == "pos-weight":
            assert row["status"] == "error" and row["error_type"] == "HgimbError"
            assert "binary" in row["error"] and "\n" not in row["error"]
            assert "Traceback" in (out / row["log"]).read_text()
        else:
            assert row["status"] == "ok"
            assert 0 <= row["test_macro_f1"] <= 1 and 0 <= row["val_balanced_accuracy"] <= 1
            assert row["epochs_run"] == 3 and row["hidden"] == 8 and row["dataset_options"] == {"num_movies": 300}
            assert row["wall_seconds"] > 0 and row["seconds_per_epoch"] > 0


def test_rerun_skips_recorded_runs_and_retries_only_failures(bench, monkeypatch):
    out, configs, _ = bench
    before = (out / "results.jsonl").read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("a recorded run was trained again")

    monkeypatch.setattr(worker, "execute", no_training)
    outcome = runner.run_grid(configs, out, workers=1, quiet=True)
    assert (outcome.ran, outcome.skipped_done, outcome.skipped_failed) == (0, 12, 6)
    assert (out / "results.jsonl").read_bytes() == before

    retried = []

    def still_failing(config, key, log, save_dir):
        retried.append(config["remedy"])
        return {"status": "error", "error_type": "HgimbError", "error": "still binary-only", "wall_seconds": 0.0}

    monkeypatch.setattr(worker, "execute", still_failing)
    outcome = runner.run_grid(configs, out, workers=1, quiet=True, retry_failed=True)
    assert retried == ["pos-weight"] * 6 and outcome.failed == 6
    assert len(raw_rows(out)) == 24  # appended: the latest row per run id wins
    frame = load_results(out)
    assert len(frame) == 18 and (frame.loc[frame.remedy == "pos-weight", "error"] == "still binary-only").all()


def test_leaderboard_equals_hand_computation(bench):
    out, _, _ = bench
    rows = [r for r in raw_rows(out) if r["status"] == "ok"]
    board = leaderboard(load_results(out), metric="macro_f1", split="test")
    assert len(board) == 4 and set(board.remedy) == {"none", "weighted"}
    for model in ("mlp", "rgcn"):
        by_remedy = {rem: {r["seed"]: r for r in rows if r["model"] == model and r["remedy"] == rem}
                     for rem in ("none", "weighted")}
        for rem, runs in by_remedy.items():
            line = board[(board.model == model) & (board.remedy == rem)].iloc[0]
            f1 = [runs[s]["test_macro_f1"] for s in sorted(runs)]
            assert line["n"] == 3
            assert line["macro_f1_mean"] == pytest.approx(np.mean(f1))
            assert line["macro_f1_std"] == pytest.approx(np.std(f1, ddof=1))
            assert line["minority_recall_mean"] == pytest.approx(np.mean([runs[s]["test_minority_recall"] for s in runs]))
            assert line["pr_auc_mean"] == pytest.approx(np.mean([runs[s]["test_pr_auc_macro"] for s in runs]))  # 5 classes
        diff = np.array([by_remedy["weighted"][s]["test_macro_f1"] - by_remedy["none"][s]["test_macro_f1"] for s in range(3)])
        line = board[(board.model == model) & (board.remedy == "weighted")].iloc[0]
        assert line["delta"] == pytest.approx(diff.mean()) and line["n_paired"] == 3
        if not np.allclose(diff, 0):
            assert line["p_wilcoxon"] == pytest.approx(stats.wilcoxon(diff).pvalue)
            assert line["p_ttest"] == pytest.approx(stats.ttest_rel(
                [by_remedy["weighted"][s]["test_macro_f1"] for s in range(3)],
                [by_remedy["none"][s]["test_macro_f1"] for s in range(3)]).pvalue)
        assert line["wilcoxon_min_p"] == pytest.approx(0.25)  # 2 / 2**3: cannot reach 0.05
        group = board[board.model == model]
        assert group.sort_values("rank")["macro_f1_mean"].is_monotonic_decreasing
        assert group.loc[group["rank"] == 1, "macro_f1_mean"].iloc[0] == pytest.approx(group["macro_f1_mean"].max())

    text = markdown_table(board[board.model == "mlp"])
    table = [line for line in text.splitlines() if line.startswith("| `")]
    mlp = board[board.model == "mlp"].set_index("remedy")
    best = mlp["macro_f1_mean"].round(3).idxmax()
    for line in table:
        remedy = line.split("`")[1]
        f1_cell = line.split("|")[2]
        assert (f"{mlp.loc[remedy, 'macro_f1_mean']:.3f}" in f1_cell)
        assert f1_cell.strip().startswith("**") == (round(mlp.loc[remedy, "macro_f1_mean"], 3)
                                                    == round(mlp.loc[best, "macro_f1_mean"], 3))
    assert "cannot reach p < 0.05" in text and "†" in text


def test_write_report_files(bench):
    out, _, _ = bench
    result = write_report(out)
    assert result["md"].read_text() == result["markdown"]
    csv = pd.read_csv(result["csv"])
    assert len(csv) == 4 and {"macro_f1_mean", "delta", "p_wilcoxon", "rank"} <= set(csv.columns)
    assert result["png"].stat().st_size > 1000
    assert "6 failed" in result["markdown"] and "Mean rank" in result["markdown"]


def test_truncated_last_line_is_ignored_then_repaired(bench, tmp_path, monkeypatch):
    out, configs, _ = bench
    store = tmp_path / "results.jsonl"
    good = (out / "results.jsonl").read_bytes()
    store.write_bytes(good + b'{"run_id": "abc", "status": "o')  # a hard kill mid-write
    assert len(read_rows(store)) == len(good.splitlines())
    assert len(load_results(tmp_path)) == len(load_results(out))
    monkeypatch.setattr(worker, "execute", lambda *a: pytest.fail("nothing should run"))
    runner.run_grid(configs, tmp_path, workers=1, quiet=True)  # resume: repairs before appending
    assert store.read_bytes() == good
    store.write_bytes(b'{"run_id": "x"}\nnot json\n{"run_id": "y"}\n')
    with pytest.raises(HgimbError, match=r"results.jsonl:2:"):
        read_rows(store)


def test_workers_2_gives_the_same_metrics_as_workers_1(bench, tmp_path):
    out, _, _ = bench
    configs = tiny_grid(models=["mlp", "rgcn"], remedies=["none", "weighted"], seeds="0-1")
    outcome = runner.run_grid(configs, tmp_path, workers=2, quiet=True)
    assert (outcome.ok, outcome.failed) == (8, 0)
    serial = {r["run_id"]: r for r in raw_rows(out)}
    parallel = raw_rows(tmp_path)
    assert len({r["log"] for r in parallel}) == 8
    for row in parallel:
        reference = serial[row["run_id"]]
        for key in ("test_macro_f1", "val_macro_f1", "test_pr_auc_macro", "test_balanced_accuracy", "best_epoch"):
            assert row[key] == pytest.approx(reference[key], abs=1e-9), (row["name"], key)


def test_cli_runs_saves_dry_runs_and_reports(bench, tmp_path, capsys):
    out, _, _ = bench
    save = tmp_path / "saved"
    assert main(["run", *FLAGS, "--models", "mlp", "--seeds", "0", "--out", str(save), "--workers", "1",
                 "--save-runs", "--no-plots", "--quiet"]) == 0
    row = raw_rows(save)[0]
    metrics = json.loads((save / "runs" / row["name"] / "metrics.json").read_text())
    assert metrics["test"]["macro_f1"] == row["test_macro_f1"]
    reference = {r["run_id"]: r for r in raw_rows(out)}[row["run_id"]]  # same config, same id, same result
    assert reference["test_macro_f1"] == row["test_macro_f1"]
    capsys.readouterr()
    # the short form (no subcommand) and the dry run
    assert main([*FLAGS, "--models", "mlp,rgcn", "--remedies", "none,weighted,pos-weight", "--seeds", "0-2",
                 "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "18 runs: 0 to run, 12 done, 6 failed" in printed
    assert main(["report", str(out), "--metric", "balanced_accuracy", "--split", "val"]) == 0
    assert "balanced acc." in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--datasets", "synthetic,nosuch"], "unknown dataset 'nosuch'"),
    (["--datasets", "synthetic", "--models", "rgcn,nosuch"], "unknown model 'nosuch'"),
    (["--datasets", "synthetic", "--remedies", "none,focal+nosuch"], "unknown remedy 'nosuch'"),
    (["--datasets", "synthetic", "--seeds", "4-0"], "seed range '4-0'"),
    (["--datasets", "synthetic", "--imbalance-ratio", "10,0.5"], "imbalance-ratio must be >= 1"),
    (["--datasets", "synthetic", "--remedies", "none,weighted", "--remedy-param", "gamma=2"], "gamma"),
    (["--datasets", "synthetic", "--backend", "ray"], "pip install"),
    (["--datasets", "synthetic", "--workers", "0"], "--workers"),
    (["report", "NOSUCHDIR"], "no results store"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys):
    out = tmp_path / "b"
    if argv[0] != "report":
        argv = argv + ["--out", str(out)]
    try:
        import ray  # noqa: F401
        if "ray" in argv:
            pytest.skip("ray is installed here")
    except ImportError:
        pass
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()  # validated before anything started


def test_grid_file(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text("datasets: synthetic, cora\nmodels: [mlp]\nremedies: [none, focal]\nseeds: [0, 2-3]\n"
                    "imbalance_ratio: [1, 10]\nepochs: 3\nlr: 5e-3\nremedy_params: {gamma: 1}\n"
                    "dataset_overrides:\n  cora: {lr: 0.02, models: [mlp, gcn], seeds: 0}\n")
    from hgimb.benchkit import load_grid

    configs = expand(load_grid(grid))
    synthetic = [c for c in configs if c.dataset == "synthetic"]
    cora = [c for c in configs if c.dataset == "cora"]
    assert len(synthetic) == 2 * 2 * 3 and len(cora) == 2 * 2 * 2 * 1
    assert {c.lr for c in synthetic} == {0.005} and {c.lr for c in cora} == {0.02}
    assert {c.seed for c in synthetic} == {0, 2, 3} and {c.model for c in cora} == {"mlp", "gcn"}
    assert all(c.remedy_params == ({"gamma": 1.0} if c.remedy == "focal" else {}) for c in configs)
    # command-line flags win over the file, its dataset overrides included
    merged = load_grid(grid).merged(grid_from_mapping({"lr": 0.1, "models": "mlp", "remedies": "focal"}, "cli"))
    assert {(c.lr, c.model, c.remedy) for c in expand(merged)} == {(0.1, "mlp", "focal")}
    # 10 and 10.0 are the same run
    a = tiny_grid(imbalance_ratio=[10])[0]
    b = tiny_grid(imbalance_ratio="10.0")[0]
    assert run_id(a) == run_id(b) and run_id(a) != run_id(tiny_grid(imbalance_ratio=[5])[0])
    grid.write_text("datasets: [synthetic]\nepoch: 3\n")
    assert main(["run", "--grid", str(grid), "--dry-run"]) == 2
    assert "unknown grid key 'epoch'" in capsys.readouterr().err


def test_model_overrides(tmp_path, capsys):
    """Per-model fixed keys: they beat the file's fixed keys and dataset overrides, lose to the
    command line and to axes; dict keys merge; an ensemble spec is its own entry."""
    from hgimb.benchkit import load_grid

    grid = tmp_path / "g.yaml"
    grid.write_text("datasets: [synthetic, cora]\nmodels: [mlp, gcn, mlp+gcn]\nremedies: [none, focal]\nseeds: 0\n"
                    "epochs: 3\nlr: 0.01\nhidden: [16, 32]\nmodel_options: {}\nremedy_params: {gamma: 1}\n"
                    "dataset_overrides:\n  cora: {lr: 0.02}\n"
                    "model_overrides:\n  gcn: {lr: 0.005, epochs: 4, hidden: 99, remedy_params: {gamma: 3}}\n"
                    "  mlp+gcn: {dropout: 0.1}\n")
    configs = expand(load_grid(grid))
    assert len(configs) == 2 * 3 * 2 * 2
    by = {(c.dataset, c.model, c.remedy, c.hidden): c for c in configs}
    assert {c.lr for c in configs if c.model == "gcn"} == {0.005}  # beats the file and cora's override
    assert {c.epochs for c in configs if c.model == "gcn"} == {4}
    assert {c.hidden for c in configs if c.model == "gcn"} == {16, 32}  # an axis beats the override
    assert by[("cora", "mlp", "none", 16)].lr == 0.02 and by[("synthetic", "mlp", "none", 16)].lr == 0.01
    assert by[("synthetic", "gcn", "focal", 16)].remedy_params == {"gamma": 3.0}
    assert by[("synthetic", "mlp", "focal", 16)].remedy_params == {"gamma": 1.0}
    assert {c.dropout for c in configs if c.model == "mlp+gcn"} == {0.1}
    assert {c.dropout for c in configs if c.model == "mlp"} == {RunConfig().dropout}
    # the command line wins over a model override
    merged = load_grid(grid).merged(grid_from_mapping({"lr": 0.1, "models": "gcn"}, "cli"))
    assert {(c.lr, c.epochs) for c in expand(merged)} == {(0.1, 4)}
    # an override of a model the file does not list, a list value, an axis key: refused, one line
    for text, message in (("models: [mlp]\nmodel_overrides:\n  gat: {lr: 0.1}\n", "names 'gat', which is not among"),
                          ("models: [mlp]\nmodel_overrides:\n  mlp: {lr: [0.1, 0.2]}\n", "sets one value"),
                          ("models: [mlp]\nmodel_overrides:\n  mlp: {seeds: 3}\n", "not a key a model override can set"),
                          ("models: [mlp]\nmodel_overrides:\n  mlp: {remedy_params: {gama: 2}}\n", "declared by none")):
        grid.write_text("datasets: [synthetic]\nremedies: [focal]\n" + text)
        assert main(["run", "--grid", str(grid), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_run_ids_survive_config_fields_added_later(tmp_path):
    from hgimb.benchkit.grid import config_id

    cfg = tiny_grid()[0]
    values = cfg.to_dict()
    del values["scheduler"], values["sparse_embeddings"]  # a row written before these fields existed
    assert config_id(values) == run_id(cfg)
    assert run_id(cfg.replace(scheduler="plateau")) != run_id(cfg)
    assert run_id(cfg.replace(quiet=not cfg.quiet)) == run_id(cfg)  # presentation is not part of the id
    store = tmp_path / "results.jsonl"
    rows = [{"run_id": "old-scheme", "status": "ok", **values, "test_macro_f1": 0.5},
            {"run_id": "partial", "status": "ok", "dataset": "d", "model": "m"}]  # no config: id kept
    store.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["run_id"] for r in read_rows(store)] == [run_id(cfg), "partial"]


def test_sigint_during_a_row_write_waits_for_the_row():
    # Python's own Ctrl-C handler, as in the CLIs: a library imported while the suite is
    # collected may have installed another one in this process
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with _sigint_held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # a signal seen by another thread reaches the main thread's next check
                finished = True  # reached: the signal was held back
        assert finished
    finally:
        signal.signal(signal.SIGINT, previous)


def _fake_rows(remedy_params_by_remedy):
    rows = []
    rng = np.random.default_rng(0)
    for (remedy, params) in remedy_params_by_remedy:
        for seed in range(4):
            rows.append({"run_id": f"{remedy}{params}{seed}", "status": "ok", "dataset": "magnetic-tc",
                         "imbalance_ratio": 1.0, "model": "cgcnn", "remedy": remedy, "seed": seed,
                         "remedy_params": params, "num_classes": 2, "epochs": 60,
                         "test_macro_f1": float(rng.uniform()), "test_pr_auc": float(rng.uniform()),
                         "test_pr_auc_macro": float(rng.uniform())})
    return pd.DataFrame(rows)


def test_binary_pr_auc_and_remedy_parameters():
    frame = _fake_rows([("none", {}), ("focal", {"gamma": 1.0}), ("weighted", {})])
    board = leaderboard(frame)
    assert len(board) == 3 and board["n_paired"].tolist().count(4) == 2  # focal pairs with none
    focal = board[board.remedy == "focal"].iloc[0]
    assert focal["pr_auc_mean"] == pytest.approx(frame[frame.remedy == "focal"]["test_pr_auc"].mean())
    frame = _fake_rows([("none", {}), ("focal", {"gamma": 1.0}), ("focal", {"gamma": 2.0})])
    assert set(leaderboard(frame).remedy) == {"none", "focal [gamma=1.0]", "focal [gamma=2.0]"}
    frame.loc[frame.seed == 3, "epochs"] = 200  # another varying field: its own group, never averaged in
    board = leaderboard(frame)
    assert "epochs" in board.attrs["keys"] and set(board.groupby("epochs")["n"].sum()) == {9, 3}
