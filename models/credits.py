"""The append-only credit ledger and idempotency records for credit mutations."""

from __future__ import annotations

import enum

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import BigId, Base, CreatedAtMixin, IdMixin, enum_column


class LedgerEntryKind(enum.Enum):
    PURCHASE = "PURCHASE"
    TRANSFER_IN = "TRANSFER_IN"
    TRANSFER_OUT = "TRANSFER_OUT"
    USAGE = "USAGE"
    ADJUSTMENT = "ADJUSTMENT"


class CreditLedgerEntry(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "credit_ledger_entries"
    __table_args__ = (
        CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
        CheckConstraint("delta <> 0", name="delta_non_zero"),
        # Keyset pages walk an account's ledger newest first.
        Index("ix_credit_ledger_entries_account_id_id", "account_id", "id"),
    )

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[LedgerEntryKind] = mapped_column(enum_column(LedgerEntryKind))
    delta: Mapped[int]
    balance_after: Mapped[int]
    actor_user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    note: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Both halves of a transfer share this id.
    transfer_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(100), nullable=True)


class IdempotencyRecord(IdMixin, CreatedAtMixin, Base):
    """The first result of a keyed mutation, replayed when the same key comes again."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "operation", "key"),)

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    operation: Mapped[str] = mapped_column(String(50))
    key: Mapped[str] = mapped_column(String(100))
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, object]] = mapped_column(JSON)


class LowCreditReminder(Base):
    """Per-account setting; ``armed`` is false between a downward crossing and the recovery."""

    __tablename__ = "low_credit_reminders"
    __table_args__ = (CheckConstraint("threshold >= 0", name="threshold_non_negative"),)

    account_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(default=False)
    threshold: Mapped[int] = mapped_column(default=0)
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    armed: Mapped[bool] = mapped_column(default=True)
