"""Shared fixtures. Real data comes from $HGIMB_DATA (CI sets it to the shared datasets folder)."""
import os
from pathlib import Path

import pytest
import torch

# Tests run on tiny graphs, where a second OpenMP thread costs more than it gives (and on a
# shared machine busy-waits); benchmarks and the CLIs keep torch's default.
torch.set_num_threads(1)


def _data_root() -> Path:
    return Path(os.environ.get("HGIMB_DATA", "datasets"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if not (root / "hgb").is_dir():
        pytest.skip(f"real datasets not found under HGIMB_DATA={root}; set HGIMB_DATA to the shared datasets folder")
    return root


def real_path(*parts) -> Path:
    """A path under the data root, skipping the test when it is absent."""
    path = _data_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found; set HGIMB_DATA to the shared datasets folder")
    return path
