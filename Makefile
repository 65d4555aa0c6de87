# Two commands a newcomer needs: `make demo` runs the gateway, `make test` runs the tests.
# Both create the virtualenv (.venv) and install the locked dependencies on first use, and
# again whenever pyproject.toml or requirements-test.lock changes. `make lock` refreshes the locks.
# Both also install GraphiQL's browser files (npm, pinned in assets/package-lock.json).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The locks: every package pinned with its hashes, for CPython 3.11 on Linux.
# requirements-test.lock = the dependencies and the `test` extra (what .venv holds);
# requirements.lock      = the dependencies alone, at the same versions (what the image holds).
LOCK_TEST := requirements-test.lock
LOCK      := requirements.lock
UV_VERSION   := 0.13.8
# `make lock` moves every package to the newest version pyproject.toml allows;
# `make lock LOCK_UPGRADE=` keeps the current pins where they still fit (after adding a package).
LOCK_UPGRADE ?= --upgrade
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --generate-hashes --custom-compile-command 'make lock'

# GraphiQL's files, served by the gateway under /graphiql/ (linkgate/graphiql.py): `npm ci` in
# assets/ (every package pinned with its integrity hash), then the served files are copied into
# linkgate/graphiql_assets/ (gitignored). Redone only when the lock, the page's script or the
# list of files changes.
NPM_DIR        := assets
NPM_STAMP      := $(NPM_DIR)/node_modules/.installed
GRAPHIQL_DIR   := linkgate/graphiql_assets
GRAPHIQL_STAMP := $(GRAPHIQL_DIR)/manifest.json

.PHONY: demo test schema bench lock clean graphiql-assets

demo: $(STAMP) $(GRAPHIQL_STAMP)
	$(BIN)/linkgate serve --demo

test: $(STAMP) $(GRAPHIQL_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

graphiql-assets: $(GRAPHIQL_STAMP)

schema: $(STAMP)
	$(BIN)/linkgate export-schema

bench: $(STAMP)
	$(BIN)/python -m bench.permissions

# pip checks every hash in the lock (hash-checking mode refuses an editable install in the same
# command, hence two steps); the project itself goes in editable and without dependencies.
$(STAMP): pyproject.toml $(LOCK_TEST)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Linkgate needs Python 3.11 or newer" or 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK_TEST)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# --ignore-scripts: no package runs code at install (none of these needs to).
$(NPM_STAMP): $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "GraphiQL's files come from npm: install Node.js 18+ and npm (apt-get install nodejs npm)" >&2; exit 1; }
	cd $(NPM_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

# manifest.json is written last: it exists only when the whole set was copied.
$(GRAPHIQL_STAMP): $(NPM_STAMP) $(NPM_DIR)/graphiql-start.js linkgate/graphiql.py $(STAMP)
	$(BIN)/python -m linkgate.graphiql $(NPM_DIR) $(GRAPHIQL_DIR)

# Re-resolve both locks from pyproject.toml (needs PyPI). The runtime lock is constrained by the
# test lock, so the two never disagree. Then `make test` reinstalls .venv from the new lock.
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/uv --version 2>/dev/null | grep -qF 'uv $(UV_VERSION) ' || \
		$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'
	$(UV_COMPILE) $(LOCK_UPGRADE) --extra test -o $(LOCK_TEST)
	$(UV_COMPILE) --constraint $(LOCK_TEST) -o $(LOCK)

clean:
	rm -rf $(VENV) linkgate.db linkgate.db-* $(NPM_DIR)/node_modules $(GRAPHIQL_DIR)
