"""Import every remedy module so that it registers itself (one line per module)."""
import importlib

for _module in ("weights", "losses", "samplers", "synthesis", "posthoc", "graph_remedies", "bat", "graphsha",
                "graphens_ego", "graphsmote", "regression"):
    try:
        importlib.import_module(f"{__package__}.{_module}")
    except ModuleNotFoundError as exc:  # module not written yet
        if exc.name and exc.name.startswith(__package__):
            continue
        raise
