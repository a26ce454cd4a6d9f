# kycflow developer commands. `make test` is the contract: .ci/run calls exactly it.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run demo test lint typecheck imports diagrams compose unit bench bench-core bench-service bench-kafka fmt clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: install, then run the service (embedded: SQLite, no broker) on 127.0.0.1:8080
run: $(STAMP)
	$(VENV)/bin/kycflow serve

## demo: run the service and send it realistic signed traffic from all three providers
demo: $(STAMP)
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

unit: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

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

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
