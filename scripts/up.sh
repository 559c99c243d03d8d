#!/usr/bin/env bash
# `make up`: this project's DAGs and plugins in a local `airflow standalone` (SQLite metadata DB, LocalExecutor),
# sized for a 2-core laptop, with deterministic demo users so approvals can be tried in the UI at once.
#
# Environment (all optional):
#   PORT=8080           API server / UI port (the execution API URL follows it, or tasks get "connection refused")
#   HOST=127.0.0.1      bind address; SimpleAuthManager stores plaintext passwords: keep it on localhost
#   AIRFLOW_HOME=.airflow, WRITEOFFS_DATA_DIR=.data, WRITEOFFS_LEDGER_URL=sqlite:///.data/ledger.db
#   WRITEOFFS_AUDIT_KEY_FILE=.data/audit.key   the audit chain's key (generated, mode 0600, if missing)
#   STOP_GRACE=30       seconds after Ctrl-C before a component still running gets its own SIGTERM
#   WRITEOFFS_SKIP_LEDGER_INIT=1   do not run the ledger migrations before starting
#   WRITEOFFS_SOURCES_CONFIG=...   your own source config (default: the generated sample only, see
#                                  scripts/sample_sources.py); WRITEOFFS_SAMPLE_INVOICES=20000 sizes a new sample
#
# The scheduled pipeline DAGs are unpaused once parsed (scripts/unpause_pipeline.py: each once, the first time it
# is seen, so a DAG you pause stays paused); the manual ones (schedule=None) stay paused like any new DAG.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PORT="${PORT:-8080}"
HOST="${HOST:-127.0.0.1}"

export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$ROOT/dags}"
export AIRFLOW__CORE__PLUGINS_FOLDER="${AIRFLOW__CORE__PLUGINS_FOLDER:-$ROOT/plugins}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
export WRITEOFFS_DATA_DIR="${WRITEOFFS_DATA_DIR:-$ROOT/.data}"
export WRITEOFFS_LEDGER_URL="${WRITEOFFS_LEDGER_URL:-sqlite:///$WRITEOFFS_DATA_DIR/ledger.db}"
export WRITEOFFS_SOURCES_DIR="${WRITEOFFS_SOURCES_DIR:-$WRITEOFFS_DATA_DIR/sources}"
# Tasks import `writeoffs` (include/) and `writeoffs_airflow` (plugins/) in fresh processes: put both on the path.
export PYTHONPATH="$ROOT/include:$ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"

# --- sizing for 2 cores: one API worker, one parsing process, at most 4 task slots -----------------------------
# The LocalExecutor made safe for answers given the instant a request opens (plugins/writeoffs_airflow/executors.py).
export AIRFLOW__CORE__EXECUTOR=writeoffs_airflow.executors.ParkAwareLocalExecutor
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG="${AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG:-4}"
export AIRFLOW__API__WORKERS="${AIRFLOW__API__WORKERS:-1}"
export AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="${AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES:-1}"
# New DAG files appear within 30 s instead of the default 5 minutes (development loop).
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}"

# --- ports: the UI/API port and the execution API that task processes call back must agree --------------------
export AIRFLOW__API__HOST="$HOST"
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="${AIRFLOW__API__BASE_URL:-http://localhost:$PORT}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://localhost:$PORT/execution/}"
# The task and triggerer log servers listen on fixed ports (8793/8794) by default; derive them from PORT so that
# two instances (or a test next to a running `make up`) do not collide. PORT=8080 keeps Airflow's defaults.
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="${AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT:-$((PORT + 713))}"
export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT="${AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT:-$((PORT + 714))}"

# --- demo users (SimpleAuthManager): username:ROLE; approvers respond to HITL approvals, which needs USER -------
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin,preparer:user,ar_manager:user,controller:user,cfo:user}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/demo_passwords.json}"

mkdir -p "$AIRFLOW_HOME" "$WRITEOFFS_DATA_DIR"

# The audit chain's MAC key lives outside the ledger: a random key in a mode-0600 file, made once and then kept
# (python -m writeoffs audit-key). Without a key, audit writes refuse. Production: the writeoff_audit_key connection.
export WRITEOFFS_AUDIT_KEY_FILE="${WRITEOFFS_AUDIT_KEY_FILE:-$WRITEOFFS_DATA_DIR/audit.key}"
python -m writeoffs audit-key

if [[ "${WRITEOFFS_SKIP_LEDGER_INIT:-0}" != 1 ]]; then
  python -m writeoffs init-db
fi

# Only the generated sample source, unless you name your own config.
if [[ -z "${WRITEOFFS_SOURCES_CONFIG:-}" ]]; then
  python "$ROOT/scripts/sample_sources.py"
  export WRITEOFFS_SOURCES_CONFIG="$WRITEOFFS_DATA_DIR/sources.yaml"
fi

# Known logins: Airflow would otherwise generate random passwords for users missing from the file.
python "$ROOT/scripts/demo_users.py" --print-url "http://localhost:$PORT"
echo "Ledger:      $WRITEOFFS_LEDGER_URL"
echo "Stop with Ctrl-C."
echo "========================================================================"

# In the background (same process group: Ctrl-C stops it too); it exits once every DAG file's DAG was handled.
python "$ROOT/scripts/unpause_pipeline.py" "http://127.0.0.1:$PORT" &

# Ctrl-C must stop every component exactly once: see scripts/supervise.py for why it is not a plain exec.
exec python "$ROOT/scripts/supervise.py" airflow standalone
