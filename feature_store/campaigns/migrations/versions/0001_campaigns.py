"""Campaigns, their members (treatment / control) and cached reports.

Revision ID: 0001_campaigns
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_campaigns"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("audience_id", sa.String(128), nullable=True),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("seed", sa.JSON(), nullable=True),
        sa.Column("salt", sa.String(128), nullable=True),
        sa.Column("holdout_percent", sa.Float(), nullable=False),
        sa.Column("holdout_scheme", sa.String(64), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(256), nullable=True),
        sa.Column("treatment_count", sa.Integer(), nullable=False),
        sa.Column("control_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
    )
    op.create_index("ix_campaigns_audience_id", "campaigns", ["audience_id"])
    op.create_index("ix_campaigns_sent_at", "campaigns", ["sent_at"])
    op.create_table(
        "campaign_members",
        sa.Column("campaign_id", sa.String(128), nullable=False),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("grp", sa.String(9), nullable=False),
        sa.CheckConstraint("grp IN ('treatment', 'control')", name="ck_campaign_members_grp"),
        sa.PrimaryKeyConstraint("campaign_id", "member_id", name="pk_campaign_members"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "campaign_reports",
        sa.Column("campaign_id", sa.String(128), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_campaign_reports_campaign_id_campaigns",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "window_days", "source", name="pk_campaign_reports"),
    )


def downgrade() -> None:
    op.drop_table("campaign_reports")
    op.drop_table("campaign_members")
    op.drop_index("ix_campaigns_sent_at", table_name="campaigns")
    op.drop_index("ix_campaigns_audience_id", table_name="campaigns")
    op.drop_table("campaigns")
