"""Registering another account and renaming one."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncSession

from auth.permissions import Permission
from auth.policy import AccessMap
from auth.principals import Principal
from models.accounts import Account, AccountStatus
from models.links import LinkMethod
from resolvers import links
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
    linked: links.Linked | None = None


def account_closed(field: str = "accountId") -> UserError:
    return UserError(message="The account is closed.", code="ACCOUNT_CLOSED", field=[field])


async def register_account(
    session: AsyncSession, access: AccessMap, *, principal: Principal, name: str,
    enrollment_key: bytes, link: links.LinkRequest | None = None,
) -> Registered | UserError:
    """Another account owned by the caller; its enrollment token is returned only this once.

    With ``link`` the new account joins that head's group in the same transaction, as
    ``linkAccount`` would link it (same rights on the head, same invariants, same errors,
    under ``link``); the proof is implicit, the caller being the new account's owner
    (``SAME_OWNER``). If the link fails, no account is created either.
    """
    checked = clean_account_name(name)
    if isinstance(checked, UserError):
        return checked
    await begin_write(session)
    plan = None
    if link is not None:
        plan = await links.plan_link(session, access, link)
        if isinstance(plan, UserError):
            return _under_link(plan)
        # The head first, as every writer locks (ascending ids; the new account's is higher).
        await lock_accounts(session, [plan.head.id])
    account, token = await create_account(
        session, owner_id=principal.user_id, name=checked, enrollment_key=enrollment_key)
    record_event(
        session, actor=principal, action="account.registered", account_id=account.id,
        target=("account", account.id), after={"number": account.number, "name": account.name},
    )
    linked = None
    if plan is not None:
        joined = await links.join_group(session, principal=principal, plan=plan, head=plan.head,
                                        target=account, method=LinkMethod.SAME_OWNER)
        if isinstance(joined, UserError):  # rolled back: the account too
            return _under_link(joined)
        linked = joined
    await session.commit()
    return Registered(account=account, enrollment_token=token, linked=linked)


def _under_link(error: UserError) -> UserError:
    """A link's error as ``registerAccount`` names it: its fields are under ``link``."""
    return replace(error, field=["link", *(error.field or [])])


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
