# WhatsBot developer commands. `make setup` once, then `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQUIREMENTS := functions/webhook/requirements.txt functions/transcriber/requirements.txt \
                functions/responder/requirements.txt

.PHONY: setup test dev bench lint format clean

setup: $(VENV)/.installed ## Create .venv and install everything the tests and local runs need.
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { echo "Chromium is needed by the browser test: sudo apt-get install -y chromium chromium-driver"; exit 1; }

$(VENV)/.installed: pyproject.toml $(REQUIREMENTS)
	@command -v java >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && apt-get install -y -qq default-jre-headless; }
	@command -v java >/dev/null || { echo "Java 17+ is required for the Google Cloud emulators: sudo apt-get install -y default-jre-headless"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS)) --group dev
	touch $@

test: setup ## Lint, then run the whole suite (starts and stops the emulators itself).
	$(BIN)/ruff check .
	$(BIN)/shellcheck deploy.sh scripts/*.sh .ci/run
	$(BIN)/python -m pytest

dev: setup ## The whole bot on this machine: emulators, functions, WhatsApp simulator (Ctrl-C stops).
	@$(BIN)/python -m local.dev

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

bench: setup ## Benchmarks on the local stack (not part of `make test`); JSON in bench/results/.
	$(BIN)/python -m bench.run
