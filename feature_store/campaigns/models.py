"""The campaign tables (SQLAlchemy 2 ORM). Alembic migrations (``migrations/versions``) create
them; change both together.

- ``campaigns``: one row per sent campaign: id, audience id, name, the audience definition and
  seed (JSON), the holdout (percent, salt, assignment scheme), the send time (UTC), the model
  version that built the audience and the group counts.
- ``campaign_members``: one row per member of a campaign with the group (``grp``: "treatment"
  or "control") and the member's audience score at send time (``score``, null when not
  recorded; uplift models fitted on past campaigns use it as a feature). The primary key
  (campaign_id, member_id) is the index for bulk reads (a campaign's members are one range of
  it; on SQLite the table is ``WITHOUT ROWID``, so the rows are stored in that order). No
  foreign key to ``campaigns`` and no second index: each costs more than the whole write (COPY
  of 1M members on PostgreSQL: 1.7 s with the key alone, 3.3 s with an index on (campaign_id,
  grp), 7.2 s with the foreign key too). Members are written only together with their
  campaign, in one transaction.
- ``campaign_reports``: cached reports (JSON) per campaign, window and outcome source.
- ``purchase_events``: the purchase lines reported to the service (``POST /v1/events``), kept
  so that a campaign's outcomes can be measured after its send (feature_store.campaigns.events);
  ``ts`` is the data's local time, as in the events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

GROUPS: Final[tuple[str, ...]] = ("treatment", "control")
ID_LENGTH: Final[int] = 128

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class CampaignRow(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    audience_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    name: Mapped[str | None] = mapped_column(String(256))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    salt: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    holdout_percent: Mapped[float] = mapped_column(Float)
    holdout_scheme: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    model_version: Mapped[str | None] = mapped_column(String(256))
    treatment_count: Mapped[int] = mapped_column(Integer)
    control_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CampaignMemberRow(Base):
    __tablename__ = "campaign_members"
    __table_args__ = (
        CheckConstraint("grp IN ('treatment', 'control')", name="grp"),
        {"sqlite_with_rowid": False},
    )

    campaign_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    group: Mapped[str] = mapped_column("grp", String(9))
    score: Mapped[float | None] = mapped_column(Float)


class PurchaseEventRow(Base):
    __tablename__ = "purchase_events"

    event_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    order_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    item_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=False), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    amount: Mapped[float] = mapped_column(Float)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CampaignReportRow(Base):
    __tablename__ = "campaign_reports"

    campaign_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    window_days: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: where the outcomes came from ("events", "dataset:<fingerprint>", ...)
    source: Mapped[str] = mapped_column(String(256), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
