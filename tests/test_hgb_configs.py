"""configs/hgb/*.yaml (scripts/reproduce_hgb.py): every file parses, names a registered model with
options that model accepts, and dataset options the HGB loader accepts."""
import inspect
import sys
from pathlib import Path

import pytest
import torch

from hgimb.config import RunConfig
from hgimb.data import synthetic
from hgimb.data.hgb import load_hgb_task
from hgimb.engine.trainer import model_config
from hgimb.models import build_model

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs" / "hgb").glob("*.yaml"))


def test_reproduce_script_has_a_config_for_every_pair():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import reproduce_hgb
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    expected = {f"{d}-{m}.yaml" for d in reproduce_hgb.DATASETS for m in reproduce_hgb.MODELS}
    assert expected == {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_its_model(path):
    cfg = RunConfig.from_yaml(path)
    cfg.validate()
    assert path.stem == f"{cfg.dataset}-{cfg.model}"
    accepted = set(inspect.signature(load_hgb_task).parameters)
    assert set(cfg.dataset_options) <= accepted, cfg.dataset_options
    # the model with the file's options, on a small graph of the same kind (node task)
    task = synthetic.generate(num_movies=120, num_classes=3, seed=0)
    torch.manual_seed(0)
    model = build_model(cfg.model, task, model_config(cfg))
    assert model(task.data).shape == (task.num_items, 3)
