"""People attached to an account: support contacts, the billing contact, sub-account holders."""

from __future__ import annotations

import enum

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import BigId, Base, CreatedAtMixin, IdMixin, StringList


class EmailPreference(enum.Enum):
    GENERAL = "GENERAL"
    INVOICE = "INVOICE"
    SUPPORT = "SUPPORT"
    PRODUCT = "PRODUCT"
    CREDIT = "CREDIT"


class Contact(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "contacts"
    __table_args__ = (
        # One billing contact per account, held by the database.
        Index("uq_contacts_one_billing_contact", "account_id", unique=True,
              sqlite_where=text("is_billing_contact"),
              postgresql_where=text("is_billing_contact")),
    )

    account_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40), nullable=True)
    address_line1: Mapped[str | None] = mapped_column(String(200), nullable=True)
    address_line2: Mapped[str | None] = mapped_column(String(200), nullable=True)
    city: Mapped[str | None] = mapped_column(String(100), nullable=True)
    postal_code: Mapped[str | None] = mapped_column(String(20), nullable=True)
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    # The customer's tax (VAT) ID, printed on invoices addressed to this contact.
    tax_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    is_support_contact: Mapped[bool] = mapped_column(default=False)
    is_billing_contact: Mapped[bool] = mapped_column(default=False)
    email_preferences: Mapped[list[str]] = mapped_column(StringList(), default=list)
    # The user this contact was activated as (a sub-account), if any.
    user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
