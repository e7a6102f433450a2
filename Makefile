# The two commands: `make run` (the service on the shipped demo config) and `make test`
# (the whole suite). Both create .venv and install what they need on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test system-deps bench clean lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,postgres,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/intake db upgrade
	$(BIN)/intake run

system-deps:
	bash .ci/system-deps.sh

# The suite runs twice: on SQLite, then on a private PostgreSQL (started by the tests).
test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	INTAKE_TEST_DB=postgres $(BIN)/python -m pytest -m "not sqlite_only and not browser" $(PYTEST_ARGS)

bench: $(STAMP) system-deps
	$(BIN)/python bench/ingest.py --n 1000

clean:
	rm -rf $(VENV) var .pytest_cache
