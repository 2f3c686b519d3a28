"""Without DGL, every DGL entry point says how to install it and the CLIs exit 2. Runs whether or
not DGL is installed: an installed DGL is hidden with ``sys.modules["dgl"] = None``."""
import sys

import pytest

from hgimb.config import RunConfig
from hgimb.data import load_dataset
from hgimb.errors import HgimbError

HINT = 'pip install -e ".[dgl]"'


@pytest.fixture
def no_dgl(monkeypatch):
    monkeypatch.setitem(sys.modules, "dgl", None)  # "import dgl" now raises ModuleNotFoundError


def test_conversions_and_models_say_how_to_install(no_dgl, tmp_path):
    from hgimb.data import from_dgl, to_dgl
    from hgimb.models import ModelConfig, build_model

    task = load_dataset("synthetic", num_movies=60)
    for call in (lambda: to_dgl(task), lambda: from_dgl(object()),
                 lambda: build_model("dgl-rgcn", task, ModelConfig()), lambda: build_model("dgl-gat", task, ModelConfig()),
                 lambda: load_dataset(f"dgl:{tmp_path / 'g.bin'}")):
        with pytest.raises(HgimbError) as info:
            call()
        assert HINT in str(info.value) and "not installed" in str(info.value) and "\n" not in str(info.value)


def test_cli_exits_2_with_the_install_hint(no_dgl, tmp_path, capsys):
    from hgimb.train import main

    for argv in (["--dataset", "synthetic", "--dataset-option", "num_movies=60", "--model", "dgl-gat", "--epochs", "1"],
                 ["--dataset", f"dgl:{tmp_path / 'g.bin'}", "--epochs", "1"]):
        assert main(argv + ["--quiet", "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and HINT in err and err.count("\n") == 1


def test_bench_runner_records_the_reason(no_dgl, tmp_path):
    from hgimb.benchkit import load_results, run_grid

    cfg = RunConfig(dataset="synthetic", dataset_options={"num_movies": 60}, model="dgl-rgcn", epochs=1, quiet=True)
    run_grid([cfg], tmp_path / "store", workers=1, quiet=True, echo=lambda *_: None)
    row = load_results(tmp_path / "store", all_rows=True).iloc[0]
    assert row["status"] != "ok" and HINT in str(row.get("error", ""))


def test_models_stay_listed_without_dgl(no_dgl):
    from hgimb.models.registry import MODELS, models_for

    assert {"dgl-rgcn", "dgl-gat"} <= set(models_for("node"))
    assert "needs dgl" in MODELS.describe("dgl-gat")
