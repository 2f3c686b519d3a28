"""RunConfig, YAML configs and CLI flag mapping."""
import pytest

from hgimb.cli import ArgumentParser, add_run_config_flags, config_from_args, parse_key_values
from hgimb.config import RunConfig
from hgimb.errors import HgimbError


def parse(argv):
    parser = ArgumentParser()
    parser.add_argument("--config")
    add_run_config_flags(parser)
    return config_from_args(parser.parse_args(argv))


def test_flags_map_onto_config():
    cfg = parse(["--dataset", "acm", "--epochs", "7", "--imbalance-ratio", "10", "--remedy-param", "gamma=1.5",
                 "--skip-bad", "--no-plots"])
    assert cfg.dataset == "acm" and cfg.epochs == 7 and cfg.imbalance_ratio == 10.0
    assert cfg.remedy_params == {"gamma": 1.5} and cfg.skip_bad and not cfg.plots


def test_yaml_then_flags_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: freebase\nepochs: 300\nlr: 0.005\nremedy_params: {gamma: 2}\n")
    cfg = parse(["--config", str(path), "--epochs", "10", "--remedy-param", "alpha=0.25"])
    assert cfg.dataset == "freebase" and cfg.lr == 0.005 and cfg.epochs == 10
    assert cfg.remedy_params == {"gamma": 2, "alpha": 0.25}


@pytest.mark.parametrize("text,message", [
    ("epoch: 3\n", "unknown key"),
    ("- a\n- b\n", "mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_bad_yaml(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(HgimbError, match=message):
        RunConfig.from_yaml(path)


def test_validation_messages():
    with pytest.raises(HgimbError, match="imbalance-ratio must be >= 1"):
        RunConfig(imbalance_ratio=0.5).validate()
    with pytest.raises(HgimbError, match="dropout"):
        RunConfig(dropout=1.0).validate()
    with pytest.raises(HgimbError, match="name=value"):
        parse_key_values(["gamma"], "--remedy-param")


def test_every_config_in_configs_dir_loads():
    from pathlib import Path

    files = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))
    assert files, "configs/ should hold one YAML per dataset"
    for path in files:
        RunConfig.from_yaml(path)
