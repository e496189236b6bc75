# The two commands of the README: `make run` (set up, then the whole pipeline locally) and
# `make test` (set up, then the test suite; .ci/run calls it). System packages the tests need (Chromium;
# podman and friends for test-containers) come from scripts/system-deps.sh.
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: setup run test test-servers lint compile

setup:
	VENV=$(VENV) ./scripts/setup-env.sh

# Offline machines with the shared test data beside the checkout use its MT-Bench copy; elsewhere the
# pinned FastChat files are downloaded once, verified and cached.
MT_BENCH_DATA ?= $(wildcard ../shared/data/mt_bench)

run: setup
	@LABPIPE_MT_BENCH_DATA=$(MT_BENCH_DATA) $(VENV)/bin/labpipe run

test: setup
	./scripts/system-deps.sh test
	$(VENV)/bin/ruff check .
	./scripts/run-tests.sh $(PYTEST_ARGS)

# Real model servers that need an environment of their own: vLLM's CPU build (scripts/setup-vllm.sh, cached in
# .venv-vllm) serving a tiny model; its tests fail, not skip, when it is missing. (`make test` skips them;
# llama.cpp's and transformers serve's tests run there.) .ci/run calls both targets.
VLLM_VENV ?= .venv-vllm

test-servers: setup
	VLLM_VENV=$(VLLM_VENV) ./scripts/setup-vllm.sh
	LABPIPE_REQUIRE_VLLM=1 LABPIPE_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python VENV=$(VENV) \
		./scripts/run-tests.sh tests/integration/real_servers/test_vllm.py $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

compile: setup
	$(VENV)/bin/labpipe compile

# Build the images locally and run the whole compiled pipeline in them (podman; see images/README.md).
.PHONY: test-containers
test-containers: setup
	./scripts/system-deps.sh containers
	VENV=$(VENV) ./scripts/test-containers.sh $(PYTEST_ARGS)
