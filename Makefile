# kycflow developer commands. `make test` is the contract: .ci/run calls exactly it.
# `make run` and `make demo` install only what running needs; the development tools
# (pytest, ruff, mypy, import-linter, the Kafka test broker) come with `make test`/`make dev`.
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
# Runtime and development tools; the name predates the split, so existing venvs stay valid.
STAMP := $(VENV)/.installed

.PHONY: install dev run demo test lint typecheck imports diagrams compose unit browser bench bench-core bench-service bench-kafka bench-profile fmt clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUNTIME)

## install: kycflow and what it needs to run, in $(VENV)
install: $(RUNTIME)

## dev: install, plus the development and test tools
dev: $(STAMP)

## run: install, then run the service (embedded: SQLite, no broker) on 127.0.0.1:8080
run: $(RUNTIME)
	$(VENV)/bin/kycflow serve

## demo: run the service and send it realistic signed traffic from all three providers
demo: $(RUNTIME)
	$(PY) -m streams.simulator.demo

## test: everything CI runs — lint, types, import rules, diagram check, the test suite
test: lint typecheck imports diagrams compose unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

imports: $(STAMP)
	$(VENV)/bin/lint-imports

diagrams: $(STAMP)
	$(PY) -m scripts.diagrams --check

## compose: validate compose.yaml (docker-compose 1.29 syntax check, installed via apt if missing)
compose:
	bash scripts/check_compose.sh

unit: $(STAMP) browser
	$(PY) -m pytest $(PYTEST_ARGS)

## browser: Debian's headless Chromium and its driver, for the console's browser tests
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

## bench: the core and the service benchmarks (installs wrk, the load generator, if missing)
bench: bench-core bench-service bench-kafka

bench-core: $(STAMP)
	$(PY) -m benchmarks

bench-service: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m benchmarks.service

bench-kafka: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m benchmarks.kafka

## bench-profile: py-spy samples of an HTTP worker and the processor under wrk load
bench-profile: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	test -x $(VENV)/bin/py-spy || $(PY) -m pip install --quiet py-spy
	$(PY) -m benchmarks.profile

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
