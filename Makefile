# Two commands set everything up: `make demo` and `make test`.
# TORCH selects the torch wheel installed first: the default takes what pip picks for this
# machine (CUDA on a GPU box); `make test TORCH=torch==2.13.0` pins a CPU wheel where one is local.
# Installs use constraints.txt, the exact versions the whole suite last passed on;
# `make test-latest` tries today's newest releases in a venv of its own instead.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch
BIN     = $(VENV)/bin
PYTEST_ARGS ?=
CONSTRAINTS ?= constraints.txt
LATEST  ?= .venv-latest

.PHONY: demo test test-latest constraints bench study clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/lorasweep run search_spaces/quickstart.yaml

test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The newest release of every dependency, without constraints, in $(LATEST).
test-latest:
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --upgrade pip
	$(LATEST)/bin/python -c "import torch" 2>/dev/null || $(LATEST)/bin/pip install "$(TORCH)"
	$(LATEST)/bin/pip install --upgrade --upgrade-strategy eager -e ".[dev]"
	$(LATEST)/bin/python -m pytest $(PYTEST_ARGS)

# After a green `make test-latest`: record what passed as the new constraints.
constraints:
	$(LATEST)/bin/pip freeze --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*/\1/' > $(CONSTRAINTS)

bench: $(VENV)/.installed
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The study of docs/study.md: three sweeps, then one analysis per question into reports/.
STUDY_RESULTS ?= results
study: $(VENV)/.installed
	$(BIN)/lorasweep run search_spaces/study_rank.yaml --set results.path=$(STUDY_RESULTS)
	$(BIN)/lorasweep run search_spaces/study_model_size.yaml --set results.path=$(STUDY_RESULTS)
	$(BIN)/lorasweep run search_spaces/study_complexity.yaml --set results.path=$(STUDY_RESULTS)
	$(BIN)/lorasweep analyze $(STUDY_RESULTS) --experiment study_rank --x rank --by scaling --report reports/study_rank
	$(BIN)/lorasweep analyze $(STUDY_RESULTS) --experiment study_model_size --x model_params --report reports/study_model_size
	$(BIN)/lorasweep analyze $(STUDY_RESULTS) --experiment study_complexity --x complexity --report reports/study_complexity

clean:
	rm -rf $(VENV) $(LATEST) results reports .pytest_cache
