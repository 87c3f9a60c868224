# WhatsBot developer commands. `make setup` once, then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The venv's exact versions: every function's lock is a subset of this one (`make lock`).
DEV_LOCK := requirements-dev.txt

.PHONY: help setup lock test dev bench lint format clean knowledge eval
.DEFAULT_GOAL := setup

help: ## This list.
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 10

setup: $(VENV)/.installed ## Create .venv and install everything the tests and local runs need, as locked.
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { echo "Chromium is needed by the browser test: sudo apt-get install -y chromium chromium-driver"; exit 1; }
	@command -v espeak-ng >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && apt-get install -y -qq espeak-ng; }
	@command -v espeak-ng >/dev/null || { echo "espeak-ng speaks the offline model's voice replies (make dev, browser test): sudo apt-get install -y espeak-ng"; exit 1; }

# pip checks every download against the lock's sha256; --prune removes what the lock no longer lists.
$(VENV)/.installed: $(DEV_LOCK)
	@command -v java >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && apt-get install -y -qq default-jre-headless; }
	@command -v java >/dev/null || { echo "Java 17+ is required for the Google Cloud emulators: sudo apt-get install -y default-jre-headless"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(DEV_LOCK)
	$(BIN)/python scripts/lock.py --prune
	touch $@

lock: setup ## Re-pin every requirements*.txt after a requirements*.in changed (UPGRADE=1: newest allowed).
	$(BIN)/python scripts/lock.py $(if $(UPGRADE),--upgrade)

test: setup ## Lint, then run the whole suite (starts and stops the emulators itself).
	$(BIN)/ruff check .
	$(BIN)/shellcheck deploy.sh scripts/*.sh .ci/run
	$(BIN)/python -m pytest

dev: setup ## The whole bot on this machine: emulators, functions, WhatsApp simulator (Ctrl-C stops).
	@$(BIN)/python -m local.dev

knowledge: setup ## Sync a folder into the knowledge base: make knowledge SOURCE=DIR (REMOVE=1 removes it).
	@$(BIN)/python -m local.knowledge sync $(if $(REMOVE),--remove,$(if $(SOURCE),"$(SOURCE)"))

eval: setup ## Score retrieval and the model on a business's cases: make eval CASES=FILE [SOURCE=DIR] [MIN_PASS=0.9].
	@$(BIN)/python -m local.knowledge eval $(if $(CASES),"$(CASES)") $(if $(SOURCE),--source "$(SOURCE)") $(if $(MIN_PASS),--min-pass $(MIN_PASS))

lint: setup ## ruff check and ruff format --check.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## ruff --fix and ruff format.
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## Remove .venv and the caches.
	rm -rf $(VENV) .pytest_cache .ruff_cache

bench: setup ## Benchmarks on the local stack (not part of `make test`); JSON in bench/results/.
	$(BIN)/python -m bench.run
