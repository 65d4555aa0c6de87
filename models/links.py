"""Link groups: accounts managed together or billed together."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, ForeignKeyConstraint, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import BigId, Base, CreatedAtMixin, IdMixin, UTCDateTime, enum_column, utcnow


class LinkKind(enum.Enum):
    MANAGEMENT = "MANAGEMENT"
    BILLING = "BILLING"


class LinkMethod(enum.Enum):
    """How control of the linked account was proven."""

    OWNER_CREDENTIALS = "OWNER_CREDENTIALS"
    ENROLLMENT_TOKEN = "ENROLLMENT_TOKEN"
    SAME_OWNER = "SAME_OWNER"
    STAFF = "STAFF"


class LinkGroup(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "link_groups"
    __table_args__ = (UniqueConstraint("id", "kind"),)

    kind: Mapped[LinkKind] = mapped_column(enum_column(LinkKind))
    name: Mapped[str | None] = mapped_column(String(100), nullable=True)


class LinkMember(IdMixin, Base):
    """One account's place in a group; the head is a member row with ``is_head``.

    Keeping the head in this table lets one unique index hold the whole invariant:
    per kind, an account stands in at most one group, as head or member, so no chains.
    """

    __tablename__ = "link_members"
    __table_args__ = (
        UniqueConstraint("kind", "account_id"),
        ForeignKeyConstraint(
            ["group_id", "kind"], ["link_groups.id", "link_groups.kind"], ondelete="CASCADE"
        ),
        Index("uq_link_members_one_head", "group_id", unique=True,
              sqlite_where=text("is_head"), postgresql_where=text("is_head")),
    )

    group_id: Mapped[int] = mapped_column(BigId, index=True)
    kind: Mapped[LinkKind] = mapped_column(enum_column(LinkKind))
    # Indexed on its own: every per-account lookup of an account's places (the dashboard's
    # link groups, unlinking) would otherwise scan the table; (kind, account_id) cannot serve it.
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"), index=True)
    is_head: Mapped[bool] = mapped_column(default=False)
    friendly_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    linked_via: Mapped[LinkMethod] = mapped_column(enum_column(LinkMethod))


class LinkPeriod(IdMixin, Base):
    """One stretch of time an account was a member (not the head) of a group.

    ``link_members`` says how things stand now; this says how they stood at any moment, so
    a charge goes to the BILLING head in force when it was incurred, whatever the links are
    at the invoice run (DESIGN §1 "The payer of a charge"). ``valid_to`` is null while the
    link stands; unlinking closes it.
    """

    __tablename__ = "link_periods"
    __table_args__ = (
        Index("ix_link_periods_account", "kind", "account_id", "valid_from"),
        Index("ix_link_periods_head", "kind", "head_account_id", "valid_from"),
    )

    kind: Mapped[LinkKind] = mapped_column(enum_column(LinkKind))
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"))
    group_id: Mapped[int] = mapped_column(BigId)  # kept after the group is dissolved
    head_account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
