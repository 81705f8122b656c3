"""Alembic migrations of the campaign store, run in code by ``CampaignStore.migrate()`` (no
alembic.ini). A new revision is a file in versions/ written like 0001_campaigns.py (short
revision ids, ``down_revision`` = the previous one); tests/campaigns/test_store.py checks that
the migrated schema matches feature_store/campaigns/models.py on SQLite and PostgreSQL.
"""
