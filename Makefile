# Two commands on a fresh machine: `make demo`, `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export WRITEOFFS_DATA_DIR ?= $(CURDIR)/.data
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo test test-fast up compose-env lint bench clean

install: $(STAMP)

# The virtualenv is rebuilt when requirements.txt (what runs; the Airflow image installs only this) or
# requirements-dev.txt (requirements.txt plus the test and lint tools) changes. include/ is put on sys.path with a
# .pth file so the domain package imports as `writeoffs` everywhere (CLI, tests, Airflow tasks) without a build step.
$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'ar_writeoffs.pth').write_text('$(CURDIR)/include\n')"
	@touch $@

demo: install
	$(BIN)/python scripts/demo_cycle.py

# The whole suite in two parts, each on two processes (pytest-xdist), each process with its own Airflow home and
# ledger schemas. Tests that start a real Airflow (marker `airflow`: processes, ports, timing budgets) go by module
# (`--dist loadfile`): a module's tests share its Airflow; two such modules run at a time, never more. The first part
# measures line coverage (pytest-cov; configuration in pyproject.toml).
test: install
	@status=0; \
	$(BIN)/python -m pytest -q -n 2 --durations=10 --cov --cov-report= -m "not airflow" || status=1; \
	$(BIN)/coverage html -q -d $(WRITEOFFS_DATA_DIR)/coverage && \
	echo "line coverage of include/ and plugins/ by the in-process tests: $$($(BIN)/coverage report --format=total) %" \
	"(per file: $(WRITEOFFS_DATA_DIR)/coverage/index.html)"; \
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=10 -m airflow || status=1; \
	exit $$status

test-fast: install
	@status=0; \
	$(BIN)/python -m pytest -q -n 2 -m "not airflow and not slow" || status=1; \
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "airflow and not slow" || status=1; \
	exit $$status

up: install
	bash scripts/up.sh

# Random secrets for docker compose into .env (git-ignored, mode 0600); existing values are kept.
compose-env:
	$(PYTHON) scripts/compose_env.py

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf .data .airflow
