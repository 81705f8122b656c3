"""Alembic environment of the campaign store.

Run only through ``feature_store.campaigns.store.CampaignStore.migrate``, which builds the
Alembic Config in code and passes an open connection in ``config.attributes["connection"]``.
The version table is ``campaign_alembic_version`` so that the store can share a database (or a
PostgreSQL schema) with other Alembic users.
"""

from __future__ import annotations

from alembic import context

from feature_store.campaigns.models import Base

VERSION_TABLE = "campaign_alembic_version"

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the campaign migrations through CampaignStore.migrate()")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
