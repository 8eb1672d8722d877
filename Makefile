# The two commands of README.md: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup browser postgres run test lint bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# Generate the sample sources, materialize every product of every domain,
# then serve the Dagster UI (webserver + daemon) on http://127.0.0.1:3000.
run: setup
	$(BIN)/dagmesh dev

# Code style, then the mesh's governance policies, contracts in step with
# their declarations, and no breaking change against published contracts.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint dbt_projects
	$(BIN)/dagmesh lint

# The UI tests drive Debian's chromium; installed from Debian's packages if missing.
browser:
	bash scripts/ensure-chromium

# The production-profile tests start a PostgreSQL cluster of their own;
# Debian's server package is installed if missing.
postgres:
	bash scripts/ensure-postgres

# pytest exits non-zero when no test ran (exit code 5), and make stops on it.
test: lint browser postgres
	$(BIN)/python -m pytest -q --durations=15

bench: setup
	$(BIN)/python bench/bench_mesh.py --scale $(or $(SCALE),1M)
