"""Alembic environment: the engine comes from `flowbuilder.store.db.alembic_config`."""

from __future__ import annotations

from alembic import context

from flowbuilder.store.schema import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Workers starting together on several hosts migrate one at a time: the others wait
            # here, then find the schema current. The lock ends with the transaction.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7200482215903211)")
        context.run_migrations()
    connection.commit()
