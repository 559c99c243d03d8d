"""The write-off workspace: server-rendered pages inside the Airflow UI (a FastAPI app the api-server mounts).

Modules: :mod:`.access` (who may see what; the ledger decides), :mod:`.queries` (set-wise reads: one page of a
batch, its totals, the CSV stream, reconciliation), :mod:`.render` (escaped HTML building blocks),
:mod:`.pages` (the pages), :mod:`.routes` (the routes, one router per area), :mod:`.app` (the app,
authentication through Airflow's auth manager). Nothing here runs at import time beyond definitions; the Airflow
plugin (``writeoffs_airflow.workspace_plugin``) builds the app on the first request.
"""
