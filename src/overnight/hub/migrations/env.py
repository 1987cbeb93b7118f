"""Alembic environment: run programmatically by `overnight.hub.db.migrate` with a live connection."""

from alembic import context

from overnight.hub.db import VERSION_TABLE
from overnight.hub.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
