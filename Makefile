# Two commands a newcomer needs: `make demo` runs the gateway, `make test` runs the tests.
# Both create the virtualenv (.venv) and install the project on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test schema bench clean

demo: $(STAMP)
	$(BIN)/linkgate serve --demo

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

schema: $(STAMP)
	$(BIN)/linkgate export-schema

bench: $(STAMP)
	$(BIN)/python -m bench.permissions

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Linkgate needs Python 3.11 or newer" or 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) linkgate.db linkgate.db-*
