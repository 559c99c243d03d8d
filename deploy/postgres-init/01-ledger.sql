-- Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d).
-- The write-off ledger lives in its own database and role, apart from Airflow's metadata database: a DBA can
-- back it up, restrict it and audit it on its own, and Airflow's `db migrate`/`db clean` never touch it.
-- Demo credentials: change them (and AIRFLOW_CONN_WRITEOFF_LEDGER) for anything but a laptop.
CREATE ROLE ledger LOGIN PASSWORD 'ledger';
CREATE DATABASE ledger OWNER ledger;
REVOKE ALL ON DATABASE ledger FROM PUBLIC;
