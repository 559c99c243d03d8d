"""Ledger database: schema, engine helpers, migrations."""
