"""Airflow-side glue for the write-off pipelines: ledger connection, notifiers, operators and UI additions.

Kept thin: business logic lives in the ``writeoffs`` domain package (include/), which never imports Airflow.
"""
