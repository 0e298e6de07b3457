"""Alembic environment: the collector runs migrations itself (Store.migrate) on the
connection it hands over, so there is no alembic.ini to keep in step."""

from alembic import context

from collector.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
