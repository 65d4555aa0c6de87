"""Cards on file: added from the processor's token, removed, limited and throttled.

A card number never reaches the gateway server: the dashboard gets a token from the processor's
own card form and ``add_payment_method`` turns it into a card on file (brand, last 4, expiry,
the processor's references). Each add is a check with the card's bank, so a stranger's guesses
are card testing: failed adds count against a throttle per user and per account, like wrong
sign-ins (``auth.throttle``).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import NotFound
from auth.permissions import Permission
from auth.policy import AccessMap
from auth.principals import Principal
from auth.throttle import FailureThrottle, ThrottleSettings
from models.payments import PaymentMethod
from resolvers.accounts import require_account
from resolvers.audit_log import record_event
from resolvers.database import begin_write
from resolvers.ledger import lock_accounts
from resolvers.payment_gateway import CardOnFile, CardRejected, GatewayUnavailable, PaymentGateway
from resolvers.user_errors import UserError

MAX_PAYMENT_METHODS = 10
# Refused cards one user, or one account, may try in the throttle's window.
MAX_REFUSED_CARDS = 5

PAYMENTS_UNAVAILABLE = UserError(message="Card payments are not available on this server.",
                                 code="PAYMENTS_UNAVAILABLE")


def card_of(method: PaymentMethod) -> CardOnFile:
    return CardOnFile(processor_ref=method.processor_ref, brand=method.brand, last4=method.last4,
                      exp_month=method.exp_month, exp_year=method.exp_year,
                      customer_ref=method.processor_customer_ref)


def card_throttle(user_id: int, account_id: int, settings: ThrottleSettings) -> FailureThrottle:
    """Refused cards are counted per (account, user), per user, and per account (growing
    delays), in the sign-in throttle's window: a handful per user, not hundreds."""
    limits = ThrottleSettings(max_failures=MAX_REFUSED_CARDS, client_max_failures=2 * MAX_REFUSED_CARDS,
                              identity_max_failures=2 * MAX_REFUSED_CARDS, window=settings.window)
    return FailureThrottle("card", f"account:{account_id}", f"user:{user_id}", limits)


def _too_many(count: int) -> UserError | None:
    if count >= MAX_PAYMENT_METHODS:
        return UserError(message=f"An account keeps at most {MAX_PAYMENT_METHODS} cards; remove one first.",
                         code="TOO_MANY_PAYMENT_METHODS")
    return None


async def _cards_on_file(session: AsyncSession, account_id: int) -> list[PaymentMethod]:
    return list((await session.scalars(select(PaymentMethod).where(
        PaymentMethod.account_id == account_id, PaymentMethod.removed_at.is_(None))
        .execution_options(populate_existing=True))).all())


async def add_payment_method(
    session: AsyncSession, access: AccessMap, principal: Principal, *,
    account_id: int, token: str, gateway: PaymentGateway, throttle: ThrottleSettings,
) -> PaymentMethod | list[UserError]:
    """BILLING_MANAGE. The limit is checked again under the account's lock before the insert,
    so concurrent adds cannot pass it together."""
    account = await require_account(session, access, account_id, Permission.BILLING_MANAGE)
    token = token.strip()
    if not 1 <= len(token) <= 200 or not token.isprintable():
        return [UserError(message="The card token is 1 to 200 printable characters.",
                          code="INVALID_CARD_TOKEN", field=["token"])]
    if gateway.name == "none":
        return [PAYMENTS_UNAVAILABLE]
    methods = await _cards_on_file(session, account_id)
    full = _too_many(len(methods))
    if full is not None:
        return [full]
    customer = next((m.processor_customer_ref for m in methods if m.gateway == gateway.name), None)
    number = account.number
    # Counted as refused before the processor is asked (so parallel guesses cannot all pass),
    # and forgiven once it accepts the card; committed, so no transaction stays open meanwhile.
    await begin_write(session)
    guard = card_throttle(principal.user_id, account_id, throttle)
    await guard.attempt(session)  # raises RateLimited
    await session.commit()
    try:
        card = await gateway.add_card(token=token, customer_ref=customer, account_number=number)
    except CardRejected as refused:
        return [UserError(message=refused.message, code=refused.code, field=["token"])]
    except GatewayUnavailable:
        await begin_write(session)
        await guard.forgive(session)
        await session.commit()
        return [UserError(message="The card processor did not answer; try again.",
                          code="GATEWAY_UNAVAILABLE")]
    await lock_accounts(session, [account_id])
    await guard.forgive(session)
    full = _too_many(len(await _cards_on_file(session, account_id)))
    if full is not None:  # concurrent adds filled it meanwhile
        await session.commit()
        await _forget(gateway, card)
        return [full]
    method = PaymentMethod(
        account_id=account_id, gateway=gateway.name, brand=card.brand[:20], last4=card.last4[:4],
        exp_month=card.exp_month, exp_year=card.exp_year, processor_ref=card.processor_ref,
        processor_customer_ref=card.customer_ref, added_by_user_id=principal.user_id,
    )
    session.add(method)
    await session.flush()
    record_event(session, actor=principal, action="payment_method.added", account_id=account_id,
                 target=("payment_method", method.id),
                 after={"brand": method.brand, "last4": method.last4,
                        "expires": f"{method.exp_month:02d}/{method.exp_year}"})
    await session.commit()
    return method


async def _forget(gateway: PaymentGateway, card: CardOnFile) -> None:
    try:
        await gateway.remove_card(card)
    except GatewayUnavailable:
        pass  # never stored here, so never charged from here either


async def remove_payment_method(
    session: AsyncSession, access: AccessMap, principal: Principal, *,
    payment_method_id: int, gateway: PaymentGateway,
) -> PaymentMethod:
    """BILLING_MANAGE on the card's account. Kept as a row (payments point at it), unusable:
    no payment, not even one left pending, is ever confirmed with a removed card."""
    method = await session.get(PaymentMethod, payment_method_id)
    if method is None or method.removed_at is not None or not access.can_see(method.account_id):
        raise NotFound("No such payment method.")
    access.require(method.account_id, Permission.BILLING_MANAGE)
    await begin_write(session)
    method = await session.get(PaymentMethod, payment_method_id, with_for_update=True,
                               populate_existing=True)
    if method is None or method.removed_at is not None:
        await session.rollback()
        raise NotFound("No such payment method.")
    method.removed_at = datetime.now(timezone.utc)
    record_event(session, actor=principal, action="payment_method.removed",
                 account_id=method.account_id, target=("payment_method", method.id),
                 before={"brand": method.brand, "last4": method.last4})
    await session.commit()
    await _forget(gateway, card_of(method))
    return method

