"""Logins: customers and internal staff."""

from __future__ import annotations

import enum

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAtMixin, IdMixin, StringList, UTCDateTime, enum_column


class StaffRole(enum.Enum):
    SUPPORT = "SUPPORT"
    BILLING = "BILLING"
    ADMIN = "ADMIN"


class User(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "users"

    # Stored lower-cased so the unique index makes emails unique case-insensitively.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    staff_role: Mapped[StaffRole | None] = mapped_column(enum_column(StaffRole), nullable=True)
    # Bumped on a password change: tokens carry it, so older tokens stop working.
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    # Two-factor sign-in (TOTP, RFC 6238): the base32 secret, set by enableTwoFactor and in
    # force once confirmed (``totp_enabled_at``). ``totp_last_step`` refuses a code's replay.
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Email categories (EmailPreference values) this login asked not to receive; security
    # mail has no category here and is always sent.
    email_opt_outs: Mapped[list[str]] = mapped_column(StringList(), default=list)

    @property
    def has_two_factor(self) -> bool:
        return self.totp_enabled_at is not None
