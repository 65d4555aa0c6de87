"""Identity state kept in the database, so every replica sees it: invitations, single-use
links (password reset, sign-up confirmation), sign-in sessions with their rotating refresh
tokens, and two-factor recovery codes.

Every secret a link or a client holds is stored only as a SHA-256 digest (``token_hash``):
the tokens are long and random, so a fast hash is enough, and a leaked table opens nothing.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import BigId, Base, CreatedAtMixin, IdMixin, StringList, UTCDateTime, enum_column


class Invitation(IdMixin, CreatedAtMixin, Base):
    """A sub-account offered to an email; the membership exists only once it is accepted."""

    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_account_id_id", "account_id", "id"),)

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    # SET NULL, not CASCADE: deleting the contact revokes the invitation (kept for the record).
    contact_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="SET NULL"), nullable=True, index=True
    )
    email: Mapped[str] = mapped_column(String(254))
    permissions: Mapped[list[str]] = mapped_column(StringList(), default=list)
    invited_by_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    accepted_by_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LinkPurpose(enum.Enum):
    """What a single-use emailed link is for; a token is only ever looked up with its purpose."""

    PASSWORD_RESET = "PASSWORD_RESET"
    SIGN_UP = "SIGN_UP"


class EmailedLink(IdMixin, CreatedAtMixin, Base):
    """A single-use link sent by email (password reset, sign-up confirmation)."""

    __tablename__ = "emailed_links"

    purpose: Mapped[LinkPurpose] = mapped_column(enum_column(LinkPurpose))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    # What the link completes (a pending sign-up's name, password hash, account name).
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class UserSession(IdMixin, CreatedAtMixin, Base):
    """One sign-in: its access tokens name it (``sid``), its refresh tokens rotate within it.

    Revoking the row ends the session on every replica at once: each request reads it
    together with the user (one statement, ``auth.principals.principal_for``).
    """

    __tablename__ = "user_sessions"

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    client_address: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Absolute end: refreshing never extends a session past it.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)


class RefreshToken(IdMixin, CreatedAtMixin, Base):
    """Every refresh token ever issued in a session; a used one presented again is theft."""

    __tablename__ = "refresh_tokens"

    session_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("user_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RecoveryCode(IdMixin, CreatedAtMixin, Base):
    """A single-use two-factor recovery code (stored as a digest)."""

    __tablename__ = "recovery_codes"

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
