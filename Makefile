# The commands of the README. Each creates .venv and installs ganforge into it when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: train test test-fast lint typecheck docs bench venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing ganforge into $(VENV) (log: $(VENV)/install.log) ..."
	@$(PY) -m pip install --upgrade pip > $(VENV)/install.log 2>&1
	@$(PY) -m pip install -e ".[dev]" >> $(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; exit 1; }
	@touch $@

train: venv            ## pix2pix on the embedded sample: a checkpoint, sample grids, logs (a few minutes)
	$(PY) train.py $(ARGS)

test: venv             ## the whole test suite (CI runs exactly this)
	$(PY) -m pytest -q $(ARGS)

test-fast: venv        ## the unit tests alone (pytest -m "not slow"), for the edit loop: a couple of minutes
	$(PY) -m pytest -q -m "not slow" $(ARGS)

lint: venv             ## ruff's lint rules and its formatter, as configured in pyproject.toml (CI runs this)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv        ## mypy on the public API: ganforge.load and the models, the data modules, the commands (CI runs this)
	$(VENV)/bin/mypy

docs: venv             ## the docs site into site/ (mkdocs-material); a broken link or a missing page fails it
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: venv            ## the benchmarks of docs/benchmarks.md (each prints its own table; vs_reference.py: GANFORGE_REF_SOURCES, VS_REF_ARGS)
	$(PY) bench/step_time.py model=pix2pix precision=32-true
	$(PY) bench/step_time.py model=pix2pix precision=bf16-mixed
	$(PY) bench/fid_throughput.py
	$(PY) bench/inference.py $(if $(OLD_SRC),--old-src $(OLD_SRC))
	$(PY) bench/vs_reference.py $(VS_REF_ARGS)

clean:
	rm -rf logs .pytest_cache .mypy_cache site
