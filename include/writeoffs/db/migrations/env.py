"""Alembic environment: uses the engine handed over by ``writeoffs.db.migrate`` or the configured URL."""

from __future__ import annotations

from alembic import context

from writeoffs.db.engine import make_engine
from writeoffs.db.migrate import full_metadata, include_object

config = context.config


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
        engine = make_engine(url or None)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=full_metadata(),
            render_as_batch=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
