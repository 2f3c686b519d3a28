# Set-up contract: `make demo` and `make test` on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
HGIMB_DATA ?= $(if $(wildcard ../shared/datasets),../shared/datasets,datasets)
export HGIMB_DATA
export MPLBACKEND = Agg

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench clean

venv: $(STAMP)

# torch first (a bare `torch` requirement would pull a multi-GB CUDA build), then the package.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: venv
	$(BIN)/python -m hgimb.train --dataset synthetic --model rgcn --remedy weighted --epochs 60 --patience 20 --out runs/demo

# make test also installs the optional DGL extra, so CI runs the DGL interop tests.
$(VENV)/.installed-dgl: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[test,dgl]"
	touch $@

test: venv $(VENV)/.installed-dgl
	DGLBACKEND=pytorch $(BIN)/python -m pytest tests

bench: venv
	$(BIN)/python -m hgimb.bench run --grid configs/bench/smoke.yaml
	$(BIN)/python -m hgimb.bench report bench/smoke

clean:
	rm -rf runs .pytest_cache
