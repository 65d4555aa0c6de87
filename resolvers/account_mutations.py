"""Registering another account and renaming one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from auth.permissions import Permission
from auth.policy import AccessMap
from auth.principals import Principal
from models.accounts import Account, AccountStatus
from resolvers.accounts import create_account, current_enrollment_token, require_account
from resolvers.audit_log import record_event
from resolvers.database import begin_write
from resolvers.ledger import lock_accounts
from resolvers.user_errors import UserError
from resolvers.validation import clean_account_name


@dataclass(frozen=True)
class Registered:
    account: Account
    enrollment_token: str


def account_closed(field: str = "accountId") -> UserError:
    return UserError(message="The account is closed.", code="ACCOUNT_CLOSED", field=[field])


async def register_account(
    session: AsyncSession, *, principal: Principal, name: str, enrollment_key: bytes
) -> Registered | UserError:
    """Another account owned by the caller; its enrollment token is returned only this once."""
    checked = clean_account_name(name)
    if isinstance(checked, UserError):
        return checked
    await begin_write(session)
    account, token = await create_account(
        session, owner_id=principal.user_id, name=checked, enrollment_key=enrollment_key)
    record_event(
        session, actor=principal, action="account.registered", account_id=account.id,
        target=("account", account.id), after={"number": account.number, "name": account.name},
    )
    await session.commit()
    return Registered(account=account, enrollment_token=token)


async def rename_account(
    session: AsyncSession, access: AccessMap, *, principal: Principal, account_id: int, name: str
) -> Account | UserError:
    """PROFILE_MANAGE; 1–50 characters after trimming."""
    await begin_write(session)
    account = await require_account(session, access, account_id, Permission.PROFILE_MANAGE)
    checked = clean_account_name(name)
    if isinstance(checked, UserError):
        return checked
    if account.status is AccountStatus.CLOSED:
        return account_closed()
    if checked != account.name:
        before = account.name
        account.name = checked
        record_event(
            session, actor=principal, action="account.renamed", account_id=account.id,
            target=("account", account.id), before={"name": before}, after={"name": checked},
        )
        await session.commit()
    return account


async def rotate_enrollment_token(
    session: AsyncSession, access: AccessMap, *, principal: Principal, account_id: int,
    enrollment_key: bytes,
) -> str:
    """LINKS_MANAGE. A new token; the old one (and any pre-derivation token) stops working
    when this commits. Invoices already issued keep printing the token of their day."""
    await begin_write(session)
    await require_account(session, access, account_id, Permission.LINKS_MANAGE)
    account = (await lock_accounts(session, [account_id]))[account_id]
    before = account.enrollment_token_version
    account.enrollment_token_version = before + 1
    account.enrollment_token_hash = None
    record_event(
        session, actor=principal, action="enrollment_token.rotated", account_id=account.id,
        target=("account", account.id), before={"version": before},
        after={"version": account.enrollment_token_version},
    )
    await session.commit()
    return current_enrollment_token(account, enrollment_key)
