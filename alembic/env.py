"""Alembic environment: runs revisions on the connection recsys-db hands over."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    version_table="alembic_version",
    version_table_schema="recsys",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
