"""Low-credit reminders: set them, and fire them exactly once per downward crossing.

The reminder is armed while the balance is at or above its threshold. A debit that takes the
balance from ≥ threshold to < threshold, on an enabled and armed reminder, queues one email per
recipient (the owner when there are none), with a copy to every contact holding the CREDIT
preference (DESIGN §1 Contacts), in the debit's transaction and disarms it; a credit
that brings the balance back to ≥ threshold re-arms it. Every change runs with the account row
locked (``resolvers.ledger.lock_accounts``), so two debits cannot both see the crossing.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.permissions import Permission
from auth.policy import AccessMap
from auth.principals import Principal
from models.accounts import Account
from models.contacts import EmailPreference
from models.credits import LowCreditReminder
from models.users import User
from resolvers.accounts import require_account
from resolvers.audit_log import record_event
from resolvers.outbox import contacts_receiving, queue_email
from resolvers.user_errors import UserError
from resolvers.validation import clean_email_list

MAX_RECIPIENTS = 10


async def _reminder_of(session: AsyncSession, account_id: int) -> LowCreditReminder | None:
    return await session.scalar(
        select(LowCreditReminder).where(LowCreditReminder.account_id == account_id)
        .execution_options(populate_existing=True)
    )


async def owner_email(session: AsyncSession, account: Account) -> str:
    return str(await session.scalar(select(User.email).where(User.id == account.owner_id)))


async def balance_changed(session: AsyncSession, account: Account, before: int) -> None:
    """Call after ``account.credit_balance`` moved from ``before``, in the same transaction."""
    after = account.credit_balance
    reminder = await _reminder_of(session, account.id)
    if reminder is None or after == before:
        return
    if after < before:
        if reminder.enabled and reminder.armed and before >= reminder.threshold > after:
            reminder.armed = False
            recipients = list(reminder.recipients) or [await owner_email(session, account)]
            copies = await contacts_receiving(session, account.id, EmailPreference.CREDIT)
            await queue_email(
                session, recipients=[*recipients, *copies], category=EmailPreference.CREDIT,
                subject=f"Low credit balance on {account.name}",
                body=(f"The credit balance of {account.name} ({account.number}) is {after}, "
                      f"below your reminder threshold of {reminder.threshold}."),
                account_id=account.id, related=("account", account.id),
            )
    elif after >= reminder.threshold and not reminder.armed:
        reminder.armed = True


def clean_recipients(recipients: list[str]) -> list[str] | list[UserError]:
    return clean_email_list(recipients, field="recipients", maximum=MAX_RECIPIENTS,
                            too_many_code="TOO_MANY_RECIPIENTS", noun="recipients")


async def set_low_credit_reminder(
    session: AsyncSession, access: AccessMap, principal: Principal | None, *,
    account_id: int, enabled: bool, threshold: int, recipients: list[str],
) -> Account | list[UserError]:
    """BILLING_MANAGE. Armed from now on exactly when the balance is at or above the threshold:
    setting a threshold above the current balance does not fire; the next crossing will."""
    from resolvers.ledger import lock_accounts

    await require_account(session, access, account_id, Permission.BILLING_MANAGE)
    errors: list[UserError] = []
    if threshold < 0:
        errors.append(UserError(message="The threshold cannot be negative.",
                                code="INVALID_THRESHOLD", field=["threshold"]))
    cleaned = clean_recipients(recipients)
    if cleaned and isinstance(cleaned[0], UserError):
        errors.extend(cleaned)  # type: ignore[arg-type]
    if errors:
        return errors
    account = (await lock_accounts(session, [account_id]))[account_id]
    reminder = await _reminder_of(session, account_id)
    before = None if reminder is None else {
        "enabled": reminder.enabled, "threshold": reminder.threshold,
        "recipients": list(reminder.recipients),
    }
    if reminder is None:
        reminder = LowCreditReminder(account_id=account_id)
        session.add(reminder)
    reminder.enabled = enabled
    reminder.threshold = threshold
    reminder.recipients = list(cleaned)  # type: ignore[arg-type]
    reminder.armed = account.credit_balance >= threshold
    if principal is not None and principal.is_staff:
        record_event(session, actor=principal, action="credits.reminder_set", account_id=account_id,
                     before=before, after={"enabled": enabled, "threshold": threshold,
                                           "recipients": list(cleaned)})  # type: ignore[arg-type]
    await session.commit()
    return account
