#!/usr/bin/env bash
# Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d).
# The write-off ledger lives in its own database and role, apart from Airflow's metadata database: a DBA can
# back it up, restrict it and audit it on its own, and Airflow's `db migrate`/`db clean` never touch it.
# The role's password comes from LEDGER_DB_PASSWORD (generated into .env by scripts/compose_env.py); nothing is
# echoed, and psql quotes it (:'ledger_password'), so no value can break out of the statement.
set -euo pipefail
: "${LEDGER_DB_PASSWORD:?LEDGER_DB_PASSWORD is not set: run python scripts/compose_env.py}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set=ledger_password="$LEDGER_DB_PASSWORD" <<'SQL'
CREATE ROLE ledger LOGIN PASSWORD :'ledger_password';
CREATE DATABASE ledger OWNER ledger;
REVOKE ALL ON DATABASE ledger FROM PUBLIC;
SQL
