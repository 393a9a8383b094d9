# tradeops.stack developer entry points. The two that matter:
#   make test   set up everything on a fresh machine and run the whole suite
#   make demo   set up everything and deploy + verify the reference stack locally
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
export PYTHONDONTWRITEBYTECODE := 1
PYTEST := $(BIN)/pytest -p no:cacheprovider
# The no-data-lost test runs this many deploy/rollback cycles of the whole stack (~2.5 min
# each on 2 cores); CI runs 3, the full 20 of the acceptance bar: TRADEOPS_NO_DATA_LOST_CYCLES=20.
export TRADEOPS_NO_DATA_LOST_CYCLES ?= 3
# Integration test files run in parallel, one file per worker (they name everything they
# create uniquely); most of their time is spent waiting on containers, not on the CPU.
TEST_WORKERS ?= 2
MOLECULE_SCENARIOS ?= $(notdir $(patsubst %/,%,$(wildcard molecule/*/)))

.PHONY: help bootstrap images lint sanity unit integration faults molecule test demo bench clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

bootstrap:  ## .venv, the collection link and a running Docker engine
	@tests/tools/bootstrap.sh

images: bootstrap  ## build the locally built images (skips unchanged contexts)
	@$(BIN)/python examples/images/build.py

lint: bootstrap  ## yamllint, ruff, ansible-lint (production profile), ansible-test sanity
	$(BIN)/yamllint --strict .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --profile production
	$(BIN)/python tests/tools/gen_docs.py --check
	tests/tools/sanity.sh

sanity: bootstrap  ## ansible-test sanity only
	tests/tools/sanity.sh

unit: bootstrap  ## pure-logic unit tests
	$(PYTEST) tests/unit

integration: images  ## integration tests against the real engine, emulator and tools
	$(PYTEST) -n $(TEST_WORKERS) --dist loadfile tests/integration

faults: images  ## whole-stack fault suite (tests/faults): prints scenario, expected, observed, recovery time
	$(PYTEST) -m "not slow" tests/faults

molecule: images  ## every Molecule scenario under molecule/ (MOLECULE_JOBS at a time, default 2)
	tests/tools/molecule_all.sh $(MOLECULE_SCENARIOS)

test: bootstrap images lint unit integration faults molecule  ## the whole suite (CI runs this)
	@echo "make test: all stages passed"

demo: images  ## deploy and verify the reference stack on the local engine
	$(BIN)/ansible-playbook -i inventories/local playbooks/site.yml

bench: images  ## benchmarks under tests/bench (print numbers, assert nothing about time)
	@set -e; for b in tests/bench/bench_*.py; do echo "=== $$b"; $(BIN)/python $$b; done

clean:  ## remove .venv and caches (images stay)
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
