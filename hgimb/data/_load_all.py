"""Import every loader module so that it registers itself (one line per module)."""
import importlib

for _module in ("hgb", "planetoid", "synthetic", "crystal"):
    try:
        importlib.import_module(f"{__package__}.{_module}")
    except ModuleNotFoundError as exc:  # a loader not written yet, or an optional dependency
        if exc.name and exc.name.startswith(__package__):
            continue
        raise
