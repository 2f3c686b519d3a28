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
