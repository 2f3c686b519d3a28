"""--amp: bfloat16 autocast on CPU trains every gradient-trained model, to within noise of float32
on a small real task; bad combinations are one-line errors."""
import pytest
import torch
from pymatgen.core import Lattice, Structure

from conftest import real_path
from hgimb import train as train_cli
from hgimb.config import RunConfig
from hgimb.engine.precision import Precision
from hgimb.engine.run import run_experiment
from hgimb.errors import HgimbError

NODE_MODELS = ["rgcn", "gat", "simple-hgn", "hgt", "han", "mlp", "metapath2vec"]


def test_precision_modes():
    cpu = torch.device("cpu")
    assert not Precision("off", cpu).enabled
    assert Precision("on", cpu).dtype == torch.bfloat16 and Precision("on", cpu).scaler is None
    assert Precision("bf16", cpu).dtype == torch.bfloat16
    with pytest.raises(HgimbError, match="--amp fp16 needs --device cuda"):
        Precision("fp16", cpu)
    with torch.no_grad(), Precision("on", cpu).autocast():
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.bfloat16


@pytest.mark.parametrize("flags, needle", [
    (["--amp", "fp16"], "--amp fp16 needs --device cuda"),
    (["--amp", "half"], "--amp must be off, on, bf16 or fp16, got 'half'"),
])
def test_bad_amp_is_one_line(flags, needle, tmp_path, capsys):
    code = train_cli.main(["--dataset", "synthetic", "--dataset-option", "num_movies=200", "--epochs", "1", "--quiet",
                           "--no-plots", "--out", str(tmp_path / "run")] + flags)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_bare_flag_means_on():
    cfg = train_cli.config_from_args(train_cli.build_parser().parse_args(["--amp"]))
    assert cfg.amp == "on"


@pytest.mark.parametrize("model", NODE_MODELS + ["dgl-rgcn", "dgl-gat"])
def test_every_node_model_trains_under_amp(model):
    if model.startswith("dgl-"):
        pytest.importorskip("dgl", reason="DGL not installed (pip install -e '.[dgl]')")
    cfg = RunConfig(dataset="synthetic", dataset_options={"num_movies": 300}, model=model, epochs=2, hidden=16,
                    amp="on", quiet=True, plots=False)
    result = run_experiment(cfg, write=False)
    assert result.metrics["epochs_run"] == 2 and 0 <= result.metrics["test"]["macro_f1"] <= 1


def test_mini_batch_training_under_amp():
    cfg = RunConfig(dataset="synthetic", dataset_options={"num_movies": 300}, model="rgcn", epochs=2, hidden=16,
                    batch_size=64, amp="on", quiet=True, plots=False)
    assert run_experiment(cfg, write=False).metrics["epochs_run"] == 2


@pytest.mark.parametrize("model", ["cgcnn", "gat"])
def test_crystal_models_train_under_amp(model, tmp_path, monkeypatch):
    monkeypatch.setenv("HGIMB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tiny"
    folder.mkdir()
    rows = []
    for i in range(12):
        Structure(Lattice.cubic(4.0 + 0.1 * i), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
            filename=str(folder / f"x{i}.cif"))
        rows.append(f"x{i},{i % 3 == 0:d}")
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    cfg = RunConfig(dataset=f"crystal:{folder}", model=model, epochs=2, hidden=16, batch_size=4, amp="on",
                    split="stratified", train_fraction=0.5, test_fraction=0.25, quiet=True, plots=False)
    assert run_experiment(cfg, write=False).metrics["epochs_run"] == 2


def test_fitted_models_refuse_amp():
    pytest.importorskip("matminer")
    real_path("crystals", "magnetic-tc")
    cfg = RunConfig(dataset="magnetic-tc", model="hist-gb", threshold=600, features="magpie", amp="on", quiet=True,
                    plots=False, split="stratified")
    with pytest.raises(HgimbError, match="--amp applies to models trained by gradient steps"):
        run_experiment(cfg, write=False)


def test_bf16_trains_to_within_noise_of_fp32_on_cora():
    """GCN on Cora, 5 seeds each: the bfloat16 autocast mean test macro-F1 within 2 points of float32."""
    real_path("planetoid", "ind.cora.x")
    scores = {}
    for amp in ("off", "on"):
        scores[amp] = [run_experiment(RunConfig(dataset="cora", model="gcn", epochs=100, patience=100, seed=seed,
                                                amp=amp, quiet=True, plots=False), write=False)
                       .metrics["test"]["macro_f1"] for seed in range(5)]
    mean = {k: sum(v) / len(v) for k, v in scores.items()}
    assert abs(mean["on"] - mean["off"]) < 0.02, scores
