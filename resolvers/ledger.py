"""Writing the credit ledger: purchases, transfers and staff-recorded usage.

Every change follows the same steps, in one transaction:

1. check the input (``userErrors``) and the caller's permissions (errors), before any write;
2. lock the account rows in ascending id order (``lock_accounts``): on PostgreSQL
   ``SELECT … FOR NO KEY UPDATE``, on SQLite the database's write lock (``begin_write``).
   One fixed order for every writer means concurrent transfers queue, never deadlock, and
   ``NO KEY`` leaves the foreign-key checks of other inserts unblocked;
3. replay the first result if the idempotency key was seen (nothing written);
4. check the balances as they are under the lock, append the entries with ``balanceAfter``,
   update the cached balance (the database refuses a negative one too), fire or re-arm the
   low-credit reminder, audit, remember the key; commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import NotFound
from auth.permissions import BILLING_STAFF_ROLES, Permission
from auth.policy import AccessMap, require_staff_role
from auth.principals import Principal
from models.accounts import Account
from models.credits import CreditLedgerEntry, LedgerEntryKind
from resolvers import idempotency
from resolvers.accounts import require_account
from resolvers.audit_log import record_event
from resolvers.charges import charge_credit_purchase
from resolvers.database import begin_write
from resolvers.live_events import LiveEvent, Topic, publish
from resolvers.reminders import balance_changed
from resolvers.tunables import Tunables
from resolvers.user_errors import UserError

# Balances and deltas are 32-bit integer columns.
MAX_BALANCE = 2**31 - 1
# One operation moves at most this many credits (a purchase also at most what its charge can hold).
MAX_CREDITS_PER_OPERATION = 10_000_000
MAX_NOTE_LENGTH = 200


@dataclass(frozen=True)
class CreditsPosted:
    """A purchase or a usage: the account after it and its ledger entry."""

    account: Account
    entry: CreditLedgerEntry
    replayed: bool = False


@dataclass(frozen=True)
class CreditsTransferred:
    from_account: Account
    to_account: Account
    from_entry: CreditLedgerEntry
    to_entry: CreditLedgerEntry
    transfer_id: str
    replayed: bool = False


def clean_credits(credits: int, *, unit_price: int | None = None) -> int | UserError:
    """A positive whole number of credits within the per-operation limit."""
    limit = MAX_CREDITS_PER_OPERATION
    if unit_price:
        limit = min(limit, MAX_BALANCE // unit_price)
    if isinstance(credits, bool) or not isinstance(credits, int) or credits <= 0:
        return UserError(message="Credits must be a whole number above zero.",
                         code="INVALID_AMOUNT", field=["credits"])
    if credits > limit:
        return UserError(message=f"At most {limit:,} credits at once.",
                         code="INVALID_AMOUNT", field=["credits"])
    return credits


def clean_note(note: str | None, *, field: str = "note", required: bool = False) -> str | None | UserError:
    text = " ".join((note or "").split())
    if not text:
        if required:
            return UserError(message="Describe the usage.", code="DESCRIPTION_EMPTY", field=[field])
        return None
    if len(text) > MAX_NOTE_LENGTH:
        return UserError(message=f"At most {MAX_NOTE_LENGTH} characters.",
                         code="NOTE_TOO_LONG", field=[field])
    return text


async def lock_accounts(session: AsyncSession, account_ids: Iterable[int]) -> dict[int, Account]:
    """The accounts, re-read under a write lock taken in ascending id order."""
    await begin_write(session)
    ids = sorted(set(account_ids))
    rows = (await session.scalars(
        select(Account).where(Account.id.in_(ids)).order_by(Account.id)
        .with_for_update(key_share=True).execution_options(populate_existing=True)
    )).all()
    if len(rows) != len(ids):  # gone since the permission check (accounts are not deleted today)
        raise NotFound("No such account.")
    return {row.id: row for row in rows}


async def _post(
    session: AsyncSession, account: Account, *, kind: LedgerEntryKind, delta: int,
    actor: Principal | None, note: str | None, transfer_id: str | None = None,
    key: str | None = None, at: datetime,
) -> CreditLedgerEntry:
    """Append one entry and move the cached balance; the caller checked the bounds."""
    before = account.credit_balance
    account.credit_balance = before + delta
    entry = CreditLedgerEntry(
        account_id=account.id, kind=kind, delta=delta, balance_after=account.credit_balance,
        actor_user_id=actor.user_id if actor else None, note=note, transfer_id=transfer_id,
        idempotency_key=key, created_at=at,
    )
    session.add(entry)
    await session.flush()  # the entry's id, for the event
    publish(session, LiveEvent(Topic.CREDIT, account.id, entry.id))
    await balance_changed(session, account, before)
    return entry


def _insufficient(account: Account, credits: int) -> UserError:
    return UserError(
        message=f"The balance is {account.credit_balance} credits; {credits} are needed.",
        code="INSUFFICIENT_CREDITS", field=["credits"],
    )


def _over_limit() -> UserError:
    return UserError(message=f"A balance cannot exceed {MAX_BALANCE:,} credits.",
                     code="BALANCE_LIMIT", field=["credits"])


async def _entries(session: AsyncSession, ids: list[int]) -> list[CreditLedgerEntry]:
    rows = {row.id: row for row in (await session.scalars(
        select(CreditLedgerEntry).where(CreditLedgerEntry.id.in_(ids))
    )).all()}
    return [rows[pk] for pk in ids]


async def _replayed_posting(
    session: AsyncSession, account: Account, *, user_id: int, operation: str, key: str,
    request: dict[str, Any],
) -> CreditsPosted | list[UserError] | None:
    """The first answer of a keyed single-entry posting repeated, an error for a key reused
    with another request, or ``None`` when the key is new (the transaction stays open)."""
    seen = await idempotency.replay(session, user_id=user_id, operation=operation, key=key,
                                    request=request)
    if isinstance(seen, UserError):
        await session.rollback()
        return [seen]
    if seen is None:
        return None
    (entry,) = await _entries(session, [int(seen["entry"])])
    await session.commit()
    return CreditsPosted(account=account, entry=entry, replayed=True)


async def _commit_keyed(session: AsyncSession) -> bool:
    """Commit; False when a concurrent request with the same key committed first."""
    try:
        await session.commit()
        return True
    except IntegrityError:
        await session.rollback()
        return False


async def purchase_credits(
    session: AsyncSession, access: AccessMap, principal: Principal | None, *,
    account_id: int, credits: int, idempotency_key: str | None, tunables: Tunables,
) -> CreditsPosted | list[UserError]:
    """CREDITS_PURCHASE. Adds the credits and a charge for the account's next invoice."""
    await require_account(session, access, account_id, Permission.CREDITS_PURCHASE)
    assert principal is not None  # require_account found a visible account
    checked = [clean_credits(credits, unit_price=tunables.credit_unit_price),
               idempotency.clean_key(idempotency_key)]
    errors = [value for value in checked if isinstance(value, UserError)]
    if errors:
        return errors
    key = checked[1] if isinstance(checked[1], str) else None
    request = {"account": account_id, "credits": credits}
    for _attempt in range(2):
        account = (await lock_accounts(session, [account_id]))[account_id]
        if key is not None:
            replayed = await _replayed_posting(session, account, user_id=principal.user_id,
                                               operation="purchaseCredits", key=key, request=request)
            if replayed is not None:
                return replayed
        if account.credit_balance + credits > MAX_BALANCE:
            await session.rollback()
            return [_over_limit()]
        now = datetime.now(timezone.utc)
        entry = await _post(session, account, kind=LedgerEntryKind.PURCHASE, delta=credits,
                            actor=principal, note="Credit top-up",
                            key=key, at=now)
        await charge_credit_purchase(session, account_id=account_id, credits=credits,
                                     tunables=tunables, at=now)
        await session.flush()
        if principal.is_staff:
            record_event(session, actor=principal, action="credits.purchased",
                         account_id=account_id, target=("credit_ledger_entry", entry.id),
                         after={"credits": credits, "credit_balance": account.credit_balance})
        if key is not None:
            idempotency.remember(session, user_id=principal.user_id, operation="purchaseCredits",
                                 key=key, request=request, response={"entry": entry.id})
        if await _commit_keyed(session):
            return CreditsPosted(account=account, entry=entry)
    raise RuntimeError("idempotency record vanished")  # pragma: no cover


async def transfer_credits(
    session: AsyncSession, access: AccessMap, principal: Principal | None, *,
    from_account_id: int, to_account_id: int, credits: int, note: str | None,
    idempotency_key: str | None,
) -> CreditsTransferred | list[UserError]:
    """CREDITS_TRANSFER on the source, CREDITS_READ on the destination; both entries or none."""
    await require_account(session, access, from_account_id, Permission.CREDITS_TRANSFER)
    await require_account(session, access, to_account_id, Permission.CREDITS_READ)
    assert principal is not None
    checked = [clean_credits(credits), clean_note(note), idempotency.clean_key(idempotency_key)]
    errors = [value for value in checked if isinstance(value, UserError)]
    if from_account_id == to_account_id:
        errors.insert(0, UserError(message="Choose two different accounts.", code="SAME_ACCOUNT",
                                   field=["toAccountId"]))
    if errors:
        return errors
    note_text = checked[1] if isinstance(checked[1], str) else None
    key = checked[2] if isinstance(checked[2], str) else None
    request = {"from": from_account_id, "to": to_account_id, "credits": credits, "note": note_text}
    for _attempt in range(2):
        locked = await lock_accounts(session, [from_account_id, to_account_id])
        source, target = locked[from_account_id], locked[to_account_id]
        if key is not None:
            seen = await idempotency.replay(session, user_id=principal.user_id,
                                            operation="transferCredits", key=key, request=request)
            if isinstance(seen, UserError):
                await session.rollback()
                return [seen]
            if seen is not None:
                out_entry, in_entry = await _entries(session, [int(seen["from"]), int(seen["to"])])
                await session.commit()
                return CreditsTransferred(source, target, out_entry, in_entry,
                                          str(seen["transfer"]), replayed=True)
        if source.credit_balance < credits:
            error = _insufficient(source, credits)
            await session.rollback()
            return [error]
        if target.credit_balance + credits > MAX_BALANCE:
            await session.rollback()
            return [_over_limit()]
        now = datetime.now(timezone.utc)
        transfer_id = str(uuid.uuid4())
        before = {source.id: source.credit_balance, target.id: target.credit_balance}
        out_entry = await _post(session, source, kind=LedgerEntryKind.TRANSFER_OUT, delta=-credits,
                                actor=principal, note=note_text, transfer_id=transfer_id,
                                key=key, at=now)
        in_entry = await _post(session, target, kind=LedgerEntryKind.TRANSFER_IN, delta=credits,
                               actor=principal, note=note_text, transfer_id=transfer_id,
                               key=key, at=now)
        await session.flush()
        details = {"transfer_id": transfer_id, "from": source.number, "to": target.number,
                   "credits": credits}
        for account, entry in ((source, out_entry), (target, in_entry)):
            record_event(session, actor=principal, action="credits.transferred",
                         account_id=account.id, target=("credit_ledger_entry", entry.id),
                         before={"credit_balance": before[account.id]},
                         after={**details, "credit_balance": account.credit_balance})
        if key is not None:
            idempotency.remember(
                session, user_id=principal.user_id, operation="transferCredits", key=key,
                request=request,
                response={"from": out_entry.id, "to": in_entry.id, "transfer": transfer_id},
            )
        if await _commit_keyed(session):
            return CreditsTransferred(source, target, out_entry, in_entry, transfer_id)
    raise RuntimeError("idempotency record vanished")  # pragma: no cover


async def record_usage(
    session: AsyncSession, access: AccessMap, principal: Principal | None, *,
    account_id: int, credits: int, description: str, idempotency_key: str | None,
) -> CreditsPosted | list[UserError]:
    """Staff (BILLING or ADMIN) debit consumed credits; audited like every staff action."""
    staff = require_staff_role(principal, BILLING_STAFF_ROLES)
    await require_account(session, access, account_id)
    checked = [clean_credits(credits), clean_note(description, field="description", required=True),
               idempotency.clean_key(idempotency_key)]
    errors = [value for value in checked if isinstance(value, UserError)]
    if errors:
        return errors
    note_text = str(checked[1])
    key = checked[2] if isinstance(checked[2], str) else None
    request = {"account": account_id, "credits": credits, "description": note_text}
    for _attempt in range(2):
        account = (await lock_accounts(session, [account_id]))[account_id]
        if key is not None:
            replayed = await _replayed_posting(session, account, user_id=staff.user_id,
                                               operation="recordUsage", key=key, request=request)
            if replayed is not None:
                return replayed
        if account.credit_balance < credits:
            error = _insufficient(account, credits)
            await session.rollback()
            return [error]
        before = account.credit_balance
        entry = await _post(session, account, kind=LedgerEntryKind.USAGE, delta=-credits,
                            actor=staff, note=note_text, key=key, at=datetime.now(timezone.utc))
        await session.flush()
        record_event(session, actor=staff, action="credits.usage_recorded", account_id=account_id,
                     target=("credit_ledger_entry", entry.id), before={"credit_balance": before},
                     after={"credit_balance": account.credit_balance, "credits": credits,
                            "description": note_text})
        if key is not None:
            idempotency.remember(session, user_id=staff.user_id, operation="recordUsage", key=key,
                                 request=request, response={"entry": entry.id})
        if await _commit_keyed(session):
            return CreditsPosted(account=account, entry=entry)
    raise RuntimeError("idempotency record vanished")  # pragma: no cover
