# WhatsBot developer commands. `make setup` once, then `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQUIREMENTS := functions/webhook/requirements.txt functions/transcriber/requirements.txt \
                functions/responder/requirements.txt

.PHONY: setup test lint format clean

setup: $(VENV)/.installed ## Create .venv and install everything the tests and local runs need.

$(VENV)/.installed: pyproject.toml $(REQUIREMENTS)
	@command -v java >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && apt-get install -y -qq default-jre-headless; }
	@command -v java >/dev/null || { echo "Java 17+ is required for the Google Cloud emulators: sudo apt-get install -y default-jre-headless"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS)) --group dev
	touch $@

test: setup ## Lint, then run the whole suite (starts and stops the emulators itself).
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
