"""Cards on file and the payments made against invoices.

Nothing here is a card number: a payment method holds only what the card processor returns
(brand, last four digits, expiry and the processor's own references).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import BigId, Base, CreatedAtMixin, IdMixin, UTCDateTime, enum_column


class PaymentMethod(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "payment_methods"
    __table_args__ = (Index("ix_payment_methods_account", "account_id", "id"),)

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    gateway: Mapped[str] = mapped_column(String(20))  # which PaymentGateway made it: test, stripe
    brand: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int]
    exp_year: Mapped[int]
    processor_ref: Mapped[str] = mapped_column(String(100))  # e.g. Stripe's pm_…
    processor_customer_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    added_by_user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    # Removed methods are kept (payments point at them) but can no longer be used.
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PaymentKind(enum.Enum):
    CARD = "CARD"  # payInvoice, through the payment gateway
    OFFLINE = "OFFLINE"  # recordPayment by staff: a bank transfer, a cheque


class PaymentStatus(enum.Enum):
    # Sent to the processor with no answer yet (a timeout, or a confirmation still to come
    # on the webhook); it holds the invoice so a second click cannot charge it again.
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class Payment(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("invoice_id", "idempotency_key"),
        # At most one card payment in flight per invoice: concurrent clicks on any replica
        # meet here, and only one reaches the processor.
        Index("uq_payments_one_pending", "invoice_id", unique=True,
              sqlite_where=text("status = 'PENDING'"), postgresql_where=text("status = 'PENDING'")),
        Index("ix_payments_processor_ref", "processor_ref"),
    )

    invoice_id: Mapped[int] = mapped_column(BigId, ForeignKey("invoices.id"), index=True)
    kind: Mapped[PaymentKind] = mapped_column(enum_column(PaymentKind))
    status: Mapped[PaymentStatus] = mapped_column(enum_column(PaymentStatus))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    payment_method_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("payment_methods.id"), nullable=True
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # The processor's reference (Stripe's pi_…) or, offline, the bank transfer reference.
    processor_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    failure_code: Mapped[str | None] = mapped_column(String(50), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(String(300), nullable=True)
    actor_user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class GatewayEvent(CreatedAtMixin, Base):
    """A processor's webhook event already applied: the same event delivered twice is applied
    once (processors retry deliveries)."""

    __tablename__ = "gateway_events"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # Stripe's evt_…
    gateway: Mapped[str] = mapped_column(String(20))
    type: Mapped[str] = mapped_column(String(100))
