"""Billable customer accounts and who holds rights on them."""

from __future__ import annotations

import enum

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import BigId, Base, CreatedAtMixin, IdMixin, StringList, enum_column


class AccountStatus(enum.Enum):
    ACTIVE = "ACTIVE"
    CLOSED = "CLOSED"


class Account(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("credit_balance >= 0", name="credit_balance_non_negative"),
        CheckConstraint("length(name) between 1 and 50", name="name_length"),
    )

    number: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    status: Mapped[AccountStatus] = mapped_column(
        enum_column(AccountStatus), default=AccountStatus.ACTIVE
    )
    # The one owner is a column, not a membership row: "exactly one" then holds by construction.
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    # Cached sum of the credit ledger, kept in the same transaction as each ledger entry.
    credit_balance: Mapped[int] = mapped_column(default=0)
    # The enrollment token is derived, not stored (auth/enrollment.py): an HMAC of the account
    # and this version, so it can be printed on invoices; rotating bumps the version.
    enrollment_token_version: Mapped[int] = mapped_column(default=1)
    # The digest of a random token made before tokens were derived; still accepted until the
    # first rotation, so no token handed out earlier stops working by surprise.
    enrollment_token_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)


class Membership(IdMixin, CreatedAtMixin, Base):
    """A sub-account: a non-owner user with the permissions the owner chose on one account."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "account_id"),)

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    permissions: Mapped[list[str]] = mapped_column(StringList(), default=list)
