"""Import every model module so that it registers itself (one line per module)."""
import importlib

for _module in ("mlp", "rgcn", "gat", "simple_hgn", "hgt", "han", "metapath2vec", "homogeneous", "cgcnn", "roost", "dgl_models", "tabular"):
    try:
        importlib.import_module(f"{__package__}.{_module}")
    except ModuleNotFoundError as exc:  # module not written yet
        if exc.name and exc.name.startswith(__package__):
            continue
        raise
