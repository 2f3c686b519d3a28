"""Hostile-but-realistic input: every case gets one line on stderr and exit 2, never a traceback,
never a silent wrong result, never a user's file destroyed. Each test is one epoch on tiny data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hgimb import bench as bench_cli
from hgimb import train as train_cli
from hgimb.engine.outdir import RUN_MARKER, is_run_dir

TINY = ["--dataset", "synthetic", "--dataset-option", "num_movies=200", "--epochs", "1", "--hidden", "8",
        "--quiet", "--no-plots"]


def call(main, args, capsys):
    """Run a CLI main in-process; returns (exit code, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ---------------------------------------------------------------------------- data loss
def test_out_existing_file_is_refused_and_kept(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("my thesis")
    code, err = call(train_cli.main, TINY + ["--out", str(target)], capsys)
    assert_one_line_error(code, err, "existing file")
    assert target.read_text() == "my thesis"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_out_foreign_directory_is_refused_and_kept(tmp_path, capsys):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "data.csv").write_text("1,2\n")
    code, err = call(train_cli.main, TINY + ["--out", str(target)], capsys)
    assert_one_line_error(code, err, "did not write")
    assert (target / "data.csv").read_text() == "1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_out_dotdot_names_the_directory_itself(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    code, err = call(train_cli.main, TINY + ["--out", str(tmp_path / "sub" / "..")], capsys)
    assert_one_line_error(code, err, "did not write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "sub"]  # no .old-/.tmp- leftovers


def test_out_below_a_file_and_unwritable_places_fail_before_training(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, err = call(train_cli.main, TINY + ["--out", str(tmp_path / "f" / "sub")], capsys)
    assert_one_line_error(code, err, "is a file")
    code, err = call(train_cli.main, TINY + ["--out", "/proc/hgimb-test"], capsys)
    assert_one_line_error(code, err, "/proc")


def test_symlink_out_is_refused(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (real / "x").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(real)
    code, err = call(train_cli.main, TINY + ["--out", str(link)], capsys)
    assert_one_line_error(code, err, "symbolic link")
    assert (real / "x").exists() and link.is_symlink()


def test_own_run_directory_and_empty_directory_are_replaced(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = call(train_cli.main, TINY + ["--out", str(empty)], capsys)
    assert code == 0, err
    assert (empty / RUN_MARKER).is_file() and is_run_dir(empty)
    first = json.loads((empty / "metrics.json").read_text())
    code, err = call(train_cli.main, TINY + ["--out", str(empty), "--seed", "1"], capsys)
    assert code == 0, err
    assert json.loads((empty / "metrics.json").read_text())["seed"] == 1 != first["seed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_marker_less_run_directory_from_older_hgimb_is_recognised(tmp_path):
    old = tmp_path / "old"
    (old / "plots").mkdir(parents=True)
    for name in ("config.yaml", "metrics.json", "history.csv"):
        (old / name).write_text("x")
    assert is_run_dir(old)
    (old / "thesis.tex").write_text("x")
    assert not is_run_dir(old)


def test_bench_out_existing_file_is_refused(tmp_path, capsys):
    target = tmp_path / "store"
    target.write_text("not a store")
    code, err = call(bench_cli.main, ["run", "--datasets", "synthetic", "--models", "rgcn", "--remedies", "none",
                                      "--seeds", "0", "--epochs", "1", "--out", str(target)], capsys)
    assert_one_line_error(code, err, str(target))
    assert target.read_text() == "not a store"


# ---------------------------------------------------------------------------- flags and config values
@pytest.mark.parametrize("flags, needle", [
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["--seed", "99999999999999999999"], "--seed must be in [0, 4294967295]"),
    (["--folds", "1"], "--folds must be 0"),
    (["--folds", "-3"], "--folds must be 0"),
    (["--patience", "-1"], "--patience must be >= 0"),
    (["--num-workers", "-1"], "--num-workers must be >= 0"),
    (["--split", "per-class", "--per-class", "0"], "--per-class must be >= 1"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"),
    (["--fanout", "a,5"], "--fanout 'a,5'"),
    (["--remedy", "weighted+"], "empty part"),
    (["--remedy", "+focal"], "empty part"),
    (["--model-option", "foo=bar"], "unknown --model-option foo for model 'rgcn'"),
    (["--model", "gat", "--model-option", "foo=1"], "unknown --model-option foo for model 'gat'"),
    (["--model-option", "input_dropout=2"], "model 'rgcn': option input_dropout must be a number in [0, 1), got 2"),
    (["--remedy", "focal", "--remedy-param", "gamma=-1"], "remedy 'focal': parameter gamma must be a number >= 0, got -1"),
    (["--dataset-option", "homophily=2"], "dataset 'synthetic': option homophily must be a number in [0, 1], got 2"),
    (["--train-fraction", "0.8", "--test-fraction", "0.3", "--split", "stratified"], "leave room"),
    (["--remedy", "value-regression"], "needs a binary task made from a real-valued target by --threshold"),
    (["--model", "hgt", "--remedy", "graphsmote"], "model HGT cannot"),
    (["--remedy", "graphsmote", "--batch-size", "32"], "needs full-graph training"),
])
def test_bad_flag_values_are_one_line(flags, needle, tmp_path, capsys):
    code, err = call(train_cli.main, TINY + ["--out", str(tmp_path / "run")] + flags, capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("monitor", ["micro_f1", "g_mean"])
def test_every_listed_monitor_trains(monitor, tmp_path, capsys):
    code, err = call(train_cli.main, TINY + ["--out", str(tmp_path / "run"), "--monitor", monitor], capsys)
    assert code == 0, err


def test_negative_fanout_value_is_accepted_as_documented(tmp_path, capsys):
    code, err = call(train_cli.main, TINY + ["--out", str(tmp_path / "run"), "--batch-size", "64", "--fanout", "-1,5"],
                     capsys)
    assert code == 0, err


def test_diverging_learning_rate_is_a_clear_error(tmp_path, capsys):
    code, err = call(train_cli.main, TINY + ["--out", str(tmp_path / "run"), "--lr", "1e12", "--epochs", "3"], capsys)
    assert_one_line_error(code, err, "lower --lr")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, needle", [
    ('epochs: "two"\n', "epochs (--epochs) must be an integer, got 'two'"),
    ("remedy_params: [1, 2]\n", "must be a mapping"),
    ("lr: .nan\n", "--lr must be a finite number"),
    ("- a\n- b\n", "must hold a mapping"),
    ("epochs: [\n", "not valid YAML"),
    ("hidden: true\n", "hidden (--hidden) must be an integer, got True"),
])
def test_bad_config_values_are_one_line_naming_the_file(content, needle, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(content)
    code, err = call(train_cli.main, TINY + ["--config", str(path), "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, needle)


def test_binary_config_file(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    code, err = call(train_cli.main, TINY + ["--config", str(path)], capsys)
    assert_one_line_error(code, err, "not a text file")


# ---------------------------------------------------------------------------- model defaults and provenance
def test_model_defaults_apply_unless_set_and_config_yaml_says_where_values_came_from(tmp_path, capsys):
    from hgimb.cli import config_from_args

    parse = train_cli.build_parser().parse_args
    cfg = config_from_args(parse(["--model", "simple-hgn"]))
    assert (cfg.lr, cfg.heads, cfg.monitor) == (5e-4, 8, "loss")
    assert cfg.provenance["lr"] == "model default (simple-hgn)" and cfg.provenance["model"] == "flag"
    assert cfg.provenance["optimizer"] == "default"
    cfg = config_from_args(parse(["--model", "simple-hgn", "--lr", "0.01"]))
    assert cfg.lr == 0.01 and cfg.provenance["lr"] == "flag"
    config = tmp_path / "c.yaml"
    config.write_text("model: hgt\nheads: 2\n")
    cfg = config_from_args(parse(["--config", str(config)]))
    assert cfg.model_options == {"attention": "relation"} and cfg.heads == 2 and cfg.lr == 0.005
    assert cfg.provenance["heads"] == f"config file {config}"
    cfg = config_from_args(parse(["--config", str(config), "--model-option", "attention=joint"]))
    assert cfg.model_options == {"attention": "joint"}
    # the run directory's config.yaml records the sources as comments and reads back as the same config
    code, err = call(train_cli.main, TINY + ["--out", str(tmp_path / "run"), "--lr", "0.02"], capsys)
    assert code == 0, err
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert "lr: 0.02  # flag" in text and "optimizer: adam  # default" in text
    import yaml

    from hgimb.config import RunConfig
    assert RunConfig.from_dict(yaml.safe_load(text)).lr == 0.02


@pytest.mark.parametrize("flags, needle", [
    (["--seed", "-1"], "--seed must be in [0, 4294967295], got -1"),
    (["--imbalance-ratio", "0.5"], "--imbalance-ratio must be >= 1, got 0.5"),
    (["--threshold", "nan"], "--threshold must be a finite number"),
])
def test_diagnose_checks_numeric_flags_like_train(flags, needle, capsys):
    from hgimb import diagnose

    code, err = call(diagnose.main, ["synthetic", "--split", "stratified"] + flags, capsys)
    assert_one_line_error(code, err, needle)


def test_tabular_models_default_to_the_leaderboard_descriptors():
    from hgimb.config import RunConfig

    for model in ("random-forest", "extra-trees", "hist-gb", "logistic"):
        cfg = RunConfig.from_dict({"dataset": "magnetic-tc", "model": model, "threshold": 600})
        assert cfg.features == "magpie" and cfg.provenance["features"] == f"model default ({model})"
    cfg = RunConfig.from_dict({"dataset": "magnetic-tc", "model": "hist-gb", "features": "chgnet"})
    assert cfg.features == "chgnet"


# ---------------------------------------------------------------------------- HGB files
def _hgb(tmp_path, **override):
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from hgb_case import write_case

    return write_case(tmp_path / "g", **override)


HGB_CASES = {
    "inf feature": (dict(node=lambda n: n[:3] + ["3\tp3\t0\tinf,1.0"] + n[4:]), "node.dat line 4: feature value 'inf'"),
    "nan feature on line 5": (dict(node=lambda n: n[:4] + ["4\tp4\t0\tnan,1.0"] + n[5:]), "node.dat line 5: feature value 'nan'"),
    "undeclared node type": (dict(node=lambda n: n + ["16\tz\t7\t"]), "node.dat line 17: node type 7 is not declared"),
    "nan link weight": (dict(link=lambda l: l[:3] + ["1\t13\t0\tnan"] + l[4:]), "link.dat line 4: weight 'nan' is not a finite number"),
    "undeclared link type": (dict(link=lambda l: l + ["0\t12\t5\t1.0"]), "link.dat line 25: link type 5 is not declared"),
    "no label.dat.test": (dict(test=None), "without 'test' items; use --split stratified"),
}


@pytest.mark.parametrize("case", sorted(HGB_CASES))
def test_hgb_file_problems_name_file_and_line(case, tmp_path, capsys):
    override, needle = HGB_CASES[case]
    folder = _hgb(tmp_path, **override)
    code, err = call(train_cli.main, ["--dataset", f"hgb:{folder}", "--epochs", "1", "--hidden", "8", "--quiet",
                                      "--no-plots", "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, needle)


def test_empty_link_file_warns_in_one_line(tmp_path, capsys):
    import warnings

    from hgimb.errors import DataWarning

    folder = _hgb(tmp_path, link=lambda l: [])
    with pytest.warns(DataWarning, match="edgeless") as record:
        code, err = call(train_cli.main, ["--dataset", f"hgb:{folder}", "--epochs", "1", "--hidden", "8", "--quiet",
                                          "--no-plots", "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    shown = warnings.formatwarning(record[0].message, record[0].category, record[0].filename, record[0].lineno)
    assert shown.startswith("warning: ") and shown.count("\n") == 1 and "hgb.py" not in shown


def test_missing_class_advice_does_not_blame_the_imbalance_ratio_when_it_is_one(tmp_path, capsys):
    folder = _hgb(tmp_path, label=lambda rows: [r for r in rows if not r.endswith("\t1")])
    (folder / "info.dat").write_text((folder / "info.dat").read_text())
    code, err = call(train_cli.main, ["--dataset", f"hgb:{folder}", "--epochs", "1", "--quiet", "--no-plots",
                                      "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "no training samples")
    assert "imbalance-ratio" not in err


# ---------------------------------------------------------------------------- metrics and reports
def test_binary_split_without_positives_reports_no_macro_f1():
    import numpy as np

    from hgimb.metrics import classification_report

    prob = np.tile([[0.9, 0.1]], (5, 1))
    report = classification_report([0] * 5, prob, ["neg", "pos"])
    assert report["macro_f1"] is None and report["balanced_accuracy"] is None
    assert report["missing_classes"] == ["pos"] and report["pr_auc"] is None
    assert report["accuracy"] == 1.0


def _store(tmp_path, rows):
    store = tmp_path / "b"
    store.mkdir()
    (store / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return store


def _row(seed, macro, remedy="none"):
    return {"run_id": f"r{seed}{remedy}", "status": "ok", "dataset": "d", "model": "m", "imbalance_ratio": 1.0,
            "remedy": remedy, "seed": seed, "num_classes": 3, "test_macro_f1": macro}


def test_report_counts_only_defined_values(tmp_path):
    from hgimb.benchkit.report import leaderboard, load_results, markdown_table

    store = _store(tmp_path, [_row(0, 0.5), _row(1, None), _row(2, 0.7)])
    board = leaderboard(load_results(store))
    assert int(board.loc[0, "n"]) == 3 and int(board.loc[0, "macro_f1_count"]) == 2
    assert "(n=2)" in markdown_table(board)


def test_report_warns_about_non_numeric_metrics(tmp_path):
    from hgimb.benchkit.report import leaderboard, load_results
    from hgimb.errors import DataWarning

    store = _store(tmp_path, [_row(0, 0.5), _row(1, "oops")])
    with pytest.warns(DataWarning, match="not a number"):
        leaderboard(load_results(store))


def test_report_on_row_without_config_fields_and_on_binary_store(tmp_path, capsys):
    store = _store(tmp_path, [{"run_id": "x", "status": "ok", "test_macro_f1": 0.5}])
    code, err = call(bench_cli.main, ["report", str(store)], capsys)
    assert_one_line_error(code, err, "has no 'dataset' field")
    (store / "results.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
    code, err = call(bench_cli.main, ["report", str(store)], capsys)
    assert_one_line_error(code, err, "not a JSON row")
