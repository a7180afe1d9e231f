"""The store: SQLAlchemy models, Alembic migrations and the queries the runtime makes."""
