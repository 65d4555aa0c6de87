"""Charges waiting to be invoiced, and the invoices they became."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import BigId, Base, CreatedAtMixin, IdMixin, UTCDateTime, enum_column


class ChargeKind(enum.Enum):
    CREDIT_PURCHASE = "CREDIT_PURCHASE"
    SERVICE_FEE = "SERVICE_FEE"


class Charge(IdMixin, CreatedAtMixin, Base):
    """Something owed. The payer is fixed when the charge is made, so a later BILLING
    unlink does not move charges already made."""

    __tablename__ = "charges"
    __table_args__ = (
        # A service's monthly fee is charged once per period.
        UniqueConstraint("service_id", "period"),
        Index("ix_charges_uninvoiced", "period", "invoice_id"),
    )

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"), index=True)
    payer_account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"))
    billing_group_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("link_groups.id", ondelete="SET NULL"), nullable=True
    )
    kind: Mapped[ChargeKind] = mapped_column(enum_column(ChargeKind))
    period: Mapped[str] = mapped_column(String(7))  # "YYYY-MM"
    description: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int]
    unit_price: Mapped[int]
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    service_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("services.id", ondelete="SET NULL"), nullable=True
    )
    invoice_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("invoices.id"), nullable=True
    )


class InvoiceStatus(enum.Enum):
    UNPAID = "UNPAID"
    PAID = "PAID"
    VOID = "VOID"


class Invoice(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "invoices"
    __table_args__ = (
        # Keyset pages list an account's invoices newest first.
        Index("ix_invoices_payer_issued", "payer_account_id", "issued_at", "id"),
        # Staff (and viewers of many accounts) page through every invoice newest first.
        Index("ix_invoices_issued", "issued_at", "id"),
    )

    number: Mapped[str] = mapped_column(String(30), unique=True)
    payer_account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"))
    link_group_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("link_groups.id", ondelete="SET NULL"), nullable=True
    )
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[InvoiceStatus] = mapped_column(
        enum_column(InvoiceStatus), default=InvoiceStatus.UNPAID
    )
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int]
    tax: Mapped[int]
    total: Mapped[int]
    # Bill-to snapshot taken when the invoice is issued.
    bill_to_name: Mapped[str] = mapped_column(String(100))
    bill_to_email: Mapped[str] = mapped_column(String(254))
    bill_to_line1: Mapped[str | None] = mapped_column(String(200), nullable=True)
    bill_to_line2: Mapped[str | None] = mapped_column(String(200), nullable=True)
    bill_to_city: Mapped[str | None] = mapped_column(String(100), nullable=True)
    bill_to_postal_code: Mapped[str | None] = mapped_column(String(20), nullable=True)
    bill_to_country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    bill_to_tax_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The rest of what is printed, also fixed at issue: renaming the payer or changing the
    # seller settings later changes no issued invoice (DESIGN §1 Invoices).
    payer_number: Mapped[str] = mapped_column(String(20))
    payer_name: Mapped[str] = mapped_column(String(50))
    seller_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    seller_address: Mapped[str | None] = mapped_column(String(500), nullable=True)
    seller_tax_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    payment_instructions: Mapped[str | None] = mapped_column(String(500), nullable=True)
    tax_rate_basis_points: Mapped[int] = mapped_column(default=0)
    # Which enrollment token the PDF prints: the one valid at issue (auth/enrollment.py).
    enrollment_token_version: Mapped[int | None] = mapped_column(nullable=True)
    # Σ succeeded payments, kept in the same transaction as each payment row.
    amount_paid: Mapped[int] = mapped_column(default=0)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    void_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)

    @property
    def amount_due(self) -> int:
        return 0 if self.status is InvoiceStatus.VOID else max(self.total - self.amount_paid, 0)


class InvoiceLine(IdMixin, Base):
    __tablename__ = "invoice_lines"

    invoice_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"))
    charge_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("charges.id"), nullable=True, unique=True
    )
    description: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int]
    unit_price: Mapped[int]
    amount: Mapped[int]
    # The source account as it was at issue.
    account_number: Mapped[str] = mapped_column(String(20))
    account_name: Mapped[str] = mapped_column(String(50))
