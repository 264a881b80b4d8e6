"""Alembic environment: always run with a connection handed over by `migrate.py`."""

from alembic import context

from lamin_integrations.core.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only for `alembic` run by hand
    import sqlalchemy as sa

    from lamin_integrations.core.instance import resolve

    connection = sa.create_engine(resolve()[0]).connect()

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
