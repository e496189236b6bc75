# The two commands of the README: `make run` (set up, then the whole pipeline locally) and
# `make test` (set up, then the test suite; .ci/run calls it).
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: setup run test lint compile

setup:
	VENV=$(VENV) ./scripts/setup-env.sh

run: setup
	$(VENV)/bin/labpipe run

test: setup
	$(VENV)/bin/ruff check .
	./scripts/run-tests.sh $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

compile: setup
	$(VENV)/bin/labpipe compile
