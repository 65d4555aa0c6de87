"""Support tickets and their messages."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import (
    BigId, Base, CreatedAtMixin, IdMixin, StringList, UTCDateTime, enum_column, utcnow,
)


class Department(enum.Enum):
    TECHNICAL = "TECHNICAL"
    BILLING = "BILLING"


class TicketStatus(enum.Enum):
    OPEN = "OPEN"
    ANSWERED = "ANSWERED"
    CUSTOMER_REPLY = "CUSTOMER_REPLY"
    CLOSED = "CLOSED"


class AuthorKind(enum.Enum):
    CUSTOMER = "CUSTOMER"
    STAFF = "STAFF"


class Ticket(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "tickets"
    __table_args__ = (Index("ix_tickets_account_id_id", "account_id", "id"),)

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(20), unique=True)
    subject: Mapped[str] = mapped_column(String(200))
    department: Mapped[Department] = mapped_column(enum_column(Department))
    status: Mapped[TicketStatus] = mapped_column(
        enum_column(TicketStatus), default=TicketStatus.OPEN
    )
    # Opened by a user (owner or sub-account), or by a contact writing in by email.
    opened_by_user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    opened_by_contact_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="SET NULL"), nullable=True
    )
    opened_by_name: Mapped[str] = mapped_column(String(100))
    opened_by_email: Mapped[str] = mapped_column(String(254))
    cc_emails: Mapped[list[str]] = mapped_column(StringList(), default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TicketMessage(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "ticket_messages"

    ticket_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    author_user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    author_name: Mapped[str] = mapped_column(String(100))
    author_kind: Mapped[AuthorKind] = mapped_column(enum_column(AuthorKind))
    body: Mapped[str] = mapped_column(Text)
    # How it arrived: typed in the portal, or sent by email (``linkgate receive-mail``).
    via: Mapped[str] = mapped_column(String(10), default="PORTAL")


class TicketAttachment(IdMixin, CreatedAtMixin, Base):
    """A file that came with a ticket message by email, kept within the listener's size limit."""

    __tablename__ = "ticket_attachments"

    ticket_message_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("ticket_messages.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)


class InboundMessage(IdMixin, Base):
    """Every message the mail listener accepted or refused, by its Message-ID: the same
    message delivered twice is handled once, and what became of each is on record."""

    __tablename__ = "inbound_messages"

    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    sender: Mapped[str] = mapped_column(String(254))
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    # opened | replied | refused (with ``reason``)
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    ticket_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("tickets.id", ondelete="SET NULL"), nullable=True
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
