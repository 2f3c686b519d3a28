"""scripts/crystal_leaderboard.py: the "fit on" column says where each model was fitted."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import crystal_leaderboard as board  # noqa: E402


def test_fit_on_names_where_each_member_was_fitted():
    assert board.fit_on("cgcnn", {}) == "train"
    assert board.fit_on("random-forest", {}) == "train"
    assert board.fit_on("random-forest", {"refit": True}) == "train+val (refit)"
    # every member tabular: all refitted
    assert board.fit_on("random-forest+hist-gb", {"refit": True}) == "train+val (refit)"
    # a GNN member trains on train only; refit reaches the tabular member
    assert board.fit_on("roost+random-forest", {"refit": True, "element_features": "x"}) == \
        "GNN train, random-forest train+val"
    assert board.fit_on("cgcnn+random-forest", {"refit": True}) == "GNN train, random-forest train+val"
    assert board.fit_on("roost+random-forest+hist-gb", {"refit": True}) == "GNN train, random-forest + hist-gb train+val"
    assert board.fit_on("roost+random-forest", {"element_features": "x"}) == "train"
