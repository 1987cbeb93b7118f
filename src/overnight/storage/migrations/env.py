"""Alembic environment: run by `overnight.storage.schema.upgrade` with a live connection in a transaction."""

from alembic import context

from overnight.storage.models import Base
from overnight.storage.schema import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite", transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
