#!/usr/bin/env bash
# Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d).
# The write-off ledger lives in its own database and role, apart from Airflow's metadata database: a DBA can
# back it up, restrict it and audit it on its own, and Airflow's `db migrate`/`db clean` never touch it.
# Two roles (issue 14): `ledger` owns the database and its tables and runs the migrations; `ledger_app` is the
# runtime role the DAGs connect as, given only what the application needs by `python -m writeoffs db-roles`
# (airflow-init, after the migrations): no DDL, no TRUNCATE, no trigger changes, no UPDATE/DELETE of the books.
# The passwords come from LEDGER_DB_PASSWORD / LEDGER_APP_PASSWORD (generated into .env by scripts/compose_env.py);
# nothing is echoed, and psql quotes them (:'ledger_password'), so no value can break out of the statement.
set -euo pipefail
: "${LEDGER_DB_PASSWORD:?LEDGER_DB_PASSWORD is not set: run python scripts/compose_env.py}"
: "${LEDGER_APP_PASSWORD:?LEDGER_APP_PASSWORD is not set: run python scripts/compose_env.py}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set=ledger_password="$LEDGER_DB_PASSWORD" --set=app_password="$LEDGER_APP_PASSWORD" <<'SQL'
CREATE ROLE ledger LOGIN PASSWORD :'ledger_password';
CREATE ROLE ledger_app LOGIN NOINHERIT PASSWORD :'app_password';
CREATE DATABASE ledger OWNER ledger;
REVOKE ALL ON DATABASE ledger FROM PUBLIC;
-- The runtime role may connect and use temporary tables (the policy engine does); its table grants: db-roles.
GRANT CONNECT, TEMPORARY ON DATABASE ledger TO ledger_app;
SQL
