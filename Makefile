# Two commands set everything up: `make demo` and `make test`.
# TORCH selects the torch wheel installed first: the default takes what pip picks for this
# machine (CUDA on a GPU box); `make test TORCH=torch==2.13.0` pins a CPU wheel where one is local.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch
BIN     = $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test bench study clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/lorasweep run search_spaces/quickstart.yaml

test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

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
	rm -rf $(VENV) results reports .pytest_cache
