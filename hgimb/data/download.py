"""Where each named dataset comes from, and fetching it into a data root.

Nothing in the library downloads on its own: loaders raise :func:`missing_data_error` (which says
where they looked and where to get the files) unless the user asks for a download
(``--dataset-option download=true``, or :func:`download` from Python). Tests never need the network.

Sources
- HGB (Lv et al., KDD 2021, https://github.com/THUDM/HGB): the node-classification data,
  test labels included since the 2023-03-02 release, is the Google Drive folder
  ``HGB_NC_FOLDER``. The per-dataset zips (each holding one top folder ``<Name>/`` with
  node.dat, link.dat, label.dat, label.dat.test, info.dat) are the files PyG's ``HGBDataset``
  downloads; their Drive ids are in ``HGB_DRIVE_IDS``.
  Note: upstream HGB "Freebase" is the *book* graph (180,098 nodes, 8 types); a data root may
  instead hold the Freebase *movie* graph in the same HGB format under the same file name.
- Planetoid (Yang et al., ICML 2016): the raw ``ind.<name>.<ext>`` files of
  https://github.com/kimiyoung/planetoid (MIT license).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Dict, List

from ..errors import HgimbError
from ..params import Param

HGB_PAGE = "https://github.com/THUDM/HGB"
HGB_NC_FOLDER = "https://drive.google.com/drive/folders/10-pf2ADCjq_kpJKFHHLHxr_czNNCJ3aX"
# dataset name -> (folder/zip name in the data root, Google Drive file id of the zip)
HGB_DRIVE_IDS: Dict[str, tuple] = {
    "acm": ("ACM", "1xbJ4QE9pcDJOcALv7dYhHDCPITX2Iddz"),
    "dblp": ("DBLP", "1fLLoy559V7jJaQ_9mQEsC06VKd6Qd3SC"),
    "freebase": ("Freebase", "1vw-uqbroJZfFsWpriC1CWbtHCJMGdWJ7"),
    "imdb": ("IMDB", "18qXmmwKJBrEJxVQaYwKTL3Ny3fPqJeJ2"),
}
# ``confirm=t`` skips Drive's "cannot scan this file for viruses" page for large files.
DRIVE_URL = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"

PLANETOID_PAGE = "https://github.com/kimiyoung/planetoid"
PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data/ind.{name}.{ext}"
PLANETOID_NAMES = ("cora", "citeseer", "pubmed")
PLANETOID_EXTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


def hgb_folder_name(name: str) -> str:
    """``acm`` -> ``ACM``: the file/folder name of a named HGB dataset inside ``<root>/hgb``."""
    return HGB_DRIVE_IDS[name][0]


def sources(name: str) -> Dict[str, str]:
    """For a named dataset: path relative to the data root -> URL it is downloaded from."""
    if name in HGB_DRIVE_IDS:
        folder, drive_id = HGB_DRIVE_IDS[name]
        return {f"hgb/{folder}.zip": DRIVE_URL.format(id=drive_id)}
    if name in PLANETOID_NAMES:
        return {f"planetoid/ind.{name}.{ext}": PLANETOID_URL.format(name=name, ext=ext) for ext in PLANETOID_EXTS}
    raise HgimbError(f"no download source known for dataset '{name}'; known: {', '.join(known_names())}")


def known_names() -> List[str]:
    return sorted([*HGB_DRIVE_IDS, *PLANETOID_NAMES])


def source_page(name: str) -> str:
    """A human-facing page for a named dataset (what to open in a browser)."""
    if name in HGB_DRIVE_IDS:
        return f"{HGB_NC_FOLDER} (HGB node-classification data, {HGB_PAGE})"
    if name in PLANETOID_NAMES:
        return PLANETOID_URL.format(name=name, ext="<ext>") + f" for ext in {', '.join(PLANETOID_EXTS)}"
    return "its official source"


def missing_data_error(name: str, looked_in: List[Path]) -> HgimbError:
    """The one-line error for a named dataset that is not in the data root."""
    where = ", ".join(str(p) for p in looked_in) or "(nowhere)"
    if name in HGB_DRIVE_IDS or name in PLANETOID_NAMES:
        targets = list(sources(name))
        target = targets[0] if len(targets) == 1 else f"planetoid/ind.{name}.*"
        how = (
            f"get it from {source_page(name)} and save it as <data root>/{target}, "
            f"or rerun with --dataset-option download=true (needs network); "
            f"the data root is --data-root or $HGIMB_DATA"
        )
    else:
        how = "put it there or point --data-root / $HGIMB_DATA at a data root that has it"
    return HgimbError(f"dataset '{name}' not found: looked in {where}; {how}")


def download(name: str, root: str | os.PathLike, timeout: float = 60.0) -> Path:
    """Fetch a named dataset into ``root`` (HGB: ``root/hgb/<Name>.zip``; Planetoid:
    ``root/planetoid/ind.<name>.*``) and return the dataset's path. Files already present are
    kept. Each file is written atomically; a failure raises HgimbError naming the URL."""
    root = Path(root).expanduser()
    for rel, url in sources(name).items():
        target = root / rel
        if target.is_file():
            continue
        _fetch(url, target, timeout)
        if target.suffix == ".zip" and not _looks_like_hgb_zip(target):
            target.unlink(missing_ok=True)
            raise HgimbError(
                f"download of '{name}' from {url} did not return an HGB zip (holding node.dat); "
                f"download it by hand from {source_page(name)} into {target}"
            )
    if name in HGB_DRIVE_IDS:
        return root / "hgb" / f"{hgb_folder_name(name)}.zip"
    return root / "planetoid"


def _fetch(url: str, target: Path, timeout: float) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HgimbError(f"cannot create {target.parent} for the download: {exc.strerror or exc}") from None
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        Path(tmp).unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise HgimbError(
            f"could not download {url} ({reason}); without network access, fetch it elsewhere and copy it to {target}"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _looks_like_hgb_zip(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(Path(n).name == "node.dat" for n in zf.namelist())


# ---------------------------------------------------------------------------- loader options
# Declared options shared by the file loaders (hgimb.params validates them in the registry).
DOWNLOAD = Param("download", bool, False, "fetch the files into the data root when they are missing")
NORMALIZE = Param("normalize", bool, False, "row-normalise the node features")
CACHE = Param("cache", bool, True, "reuse the parsed graph from the cache (hgimb/data/cache.py)")
