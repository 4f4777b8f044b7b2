# jiesu — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Each pytest worker runs every database test on SQLite and PostgreSQL.
PYTEST_WORKERS ?= 2

.PHONY: run test lint format bench clean help

help:
	@echo "make run    set up (venv, database, Beijing demo city and history) and serve"
	@echo "make test   the whole test suite (SQLite and PostgreSQL)"
	@echo "make lint   ruff and mypy"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/jiesu demo init
	@$(BIN)/jiesu demo logins
	@echo ""
	@echo "jiesu 接诉即办 is at http://$(HOST):$(PORT)/   (API docs: http://$(HOST):$(PORT)/api/docs)"
	@echo ""
	@# The worker (timers, deliveries, reports and scans) runs beside the server; SIGTERM stops it
	@# after the step under way. Logs for a person at a terminal (production: JSON lines).
	export JIESU_LOG_FORMAT=$${JIESU_LOG_FORMAT:-text}; \
	$(BIN)/jiesu worker & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(BIN)/jiesu serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/demo_generate.py

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache
