"""End to end: python -m hgimb.train writes the run directory contract; bad input exits 2."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hgimb.config import RunConfig
from hgimb.engine import run_experiment

METRIC_KEYS = {"dataset", "model", "remedy", "seed", "num_classes", "class_names", "train_class_counts",
               "best_epoch", "epochs_run", "train_seconds", "seconds_per_epoch", "val", "test"}
SPLIT_KEYS = {"accuracy", "balanced_accuracy", "macro_f1", "micro_f1", "weighted_f1", "g_mean",
              "pr_auc_macro", "roc_auc_macro", "per_class", "confusion_matrix"}
SMALL = {"num_movies": 400}


def small_config(tmp_path, **changes):
    base = dict(dataset="synthetic", dataset_options=SMALL, model="rgcn", remedy="weighted", epochs=8,
                hidden=16, out=str(tmp_path / "run"), quiet=True)
    base.update(changes)
    return RunConfig(**base)


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hgimb.train", *args], capture_output=True, text=True, cwd=cwd)


def test_run_directory_contract(tmp_path):
    result = run_experiment(small_config(tmp_path))
    out = Path(result.out_dir)
    for name in ("config.yaml", "metrics.json", "history.csv", "predictions.csv", "model.pt",
                 "plots/confusion_matrix.png", "plots/pr_curves.png", "plots/training_curves.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    for part in ("val", "test"):
        assert SPLIT_KEYS <= set(metrics[part])
        assert len(metrics[part]["per_class"]) == metrics["num_classes"]
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == metrics["epochs_run"] + 1 and history[0].startswith("epoch,train_loss")
    header = (out / "predictions.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["id", "split", "true", "predicted"] and len(header) == 4 + metrics["num_classes"]
    # no temporary directories left beside the run dir
    assert [p.name for p in out.parent.iterdir()] == ["run"]


def test_same_seed_same_metrics(tmp_path):
    a = run_experiment(small_config(tmp_path, seed=3), write=False).metrics
    b = run_experiment(small_config(tmp_path, seed=3), write=False).metrics
    c = run_experiment(small_config(tmp_path, seed=4), write=False).metrics
    assert a["test"] == b["test"] and a["val"] == b["val"]
    assert a["test"] != c["test"]


SYNTH = ["--dataset-option", "num_movies=300"]


@pytest.mark.parametrize("args,message", [
    (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    (["--model", "rgcm"] + SYNTH, "unknown model 'rgcm'"),
    (["--remedy", "focall"] + SYNTH, "unknown remedy 'focall'"),
    (["--imbalance-ratio", "0.5"] + SYNTH, "imbalance-ratio must be >= 1"),
    (["--epochs", "ten"], "--epochs expects int"),
    (["--dataset", "freebase", "--data-root", "/nonexistent/root"], "/nonexistent/root"),
    (["--remedy", "pos-weight"] + SYNTH, "binary"),
    (["--remedy", "focal+ldam"] + SYNTH, "combine at most one"),
    (["--remedy-param", "gamma=2"] + SYNTH, "not used by remedy"),
    (["--dataset", "freebase", "--dataset-option", "num_movies=3"], "unknown --dataset-option num_movies"),
    (["--model", "cgcnn"] + SYNTH, "does not handle node tasks"),
    (["--batch-size", "32", "--fanout", "10,x"] + SYNTH, "--fanout"),
    (["--batch-size", "32", "--model", "han"] + SYNTH, "cannot train on neighbour-sampled"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    from hgimb.train import main

    out = tmp_path / "run"
    try:
        code = main(["--epochs", "2", "--quiet", "--out", str(out), *args])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_input_from_the_shell_exits_2(tmp_path):
    proc = cli("--dataset", "nosuch", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown dataset 'nosuch'") and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_cli_prints_table_and_writes_run(tmp_path):
    proc = cli("--dataset", "synthetic", "--dataset-option", "num_movies=300", "--model", "mlp", "--epochs", "3",
               "--quiet", "--no-plots", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "macro_f1=" in proc.stdout and "precision" in proc.stdout
    assert (tmp_path / "r" / "metrics.json").is_file() and not (tmp_path / "r" / "plots").exists()


def test_help_lists_registry_names():
    proc = cli("--help")
    assert proc.returncode == 0
    for name in ("freebase", "acm", "synthetic", "rgcn", "gat", "focal", "balanced-sampler"):
        assert name in proc.stdout
