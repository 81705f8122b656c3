"""Purchase events reported to the service (the outcomes of campaigns sent through it), and
each campaign member's audience score at send time (``campaign_members.score``, nullable: the
features of uplift models fitted on past campaigns).

Revision ID: 0002_purchase_events
Revises: 0001_campaigns
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_purchase_events"
down_revision = "0001_campaigns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "purchase_events",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=False), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_purchase_events"),
    )
    op.create_index("ix_purchase_events_ts", "purchase_events", ["ts"])
    op.add_column("campaign_members", sa.Column("score", sa.Float(), nullable=True))


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (no table rebuild, WITHOUT ROWID kept)
    op.drop_column("campaign_members", "score")
    op.drop_index("ix_purchase_events_ts", table_name="purchase_events")
    op.drop_table("purchase_events")
