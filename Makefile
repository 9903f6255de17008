# probdl: the two commands are `make demo` and `make test`; both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY ?= PASSIVE
export MPLBACKEND ?= Agg

.PHONY: venv demo test bench lint docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# A CPU build of torch lies on this machine's disk; pinning it first keeps pip from a CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# bayesian-torch declares torchvision, which it does not need for its layers: install bare.
	$(BIN)/python -m pip install -q --no-deps "bayesian-torch==0.5.0"
	@touch $(STAMP)

demo: venv
	$(BIN)/python -m probdl.cli demo

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python -m benchmarks.run

lint: venv
	$(BIN)/ruff check .

docs: venv
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) site .pytest_cache
