"""Email preferences that decide (DESIGN §1 Contacts), and each login's own opt-outs, over HTTP.

A contact's preferences add copies: INVOICE of invoice emails, CREDIT of low-credit reminders,
GENERAL of account notices (here: sub-account changes). A login's own preferences
(``viewer.user.emailPreferences``, ``setEmailPreferences``) take it off any category, however
it is addressed; security mail is no category and always goes out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from models import Charge, ChargeKind
from models.audit import AuditEvent
from models.contacts import EmailPreference
from models.database import create_session_factory
from models.notifications import Notification
from models.users import User
from resolvers.outbox import queue_email, queue_security_email
from tests.billing_world import new_user, rows, seeded_customer
from tests.conftest import GraphQLClient
from tests.customers import (
    add_contact, emailed_token, new_customer, new_sub_account, pk, unique_email,
)
from tests.test_low_credit_reminders import set_reminder, use
from tests.test_sub_accounts import set_permissions

ALL = ["GENERAL", "INVOICE", "SUPPORT", "PRODUCT", "CREDIT"]
READ = "query { viewer { user { id emailPreferences } } }"
SET = """
mutation($input: SetEmailPreferencesInput!) {
  setEmailPreferences(input: $input) { user { id emailPreferences } userErrors { field code } }
}"""
MEMBERS = """
query($n: String!) { viewer { account(number: $n) {
  members { isOwner user { email emailPreferences } }
} } }"""
RUN = """
mutation($input: RunInvoicingInput!) { runInvoicing(input: $input) { invoices { number } userErrors { code } } }
"""
DELETE_CONTACT = """
mutation($input: DeleteContactInput!) { deleteContact(input: $input) { userErrors { code } } }
"""
REQUEST_RESET = """
mutation($input: RequestPasswordResetInput!) { requestPasswordReset(input: $input) { ok } }
"""
# A month no other test invoices: the run below bills only this file's charge.
PERIOD = "2011-06"


async def receive(gql: GraphQLClient, token: str, categories: list[str]) -> dict[str, Any]:
    return await gql.execute(SET, {"input": {"receive": categories}}, token=token)


async def received(gql: GraphQLClient, token: str, categories: list[str]) -> list[str]:
    payload = (await receive(gql, token, categories))["data"]["setEmailPreferences"]
    assert payload["userErrors"] == [], payload
    return payload["user"]["emailPreferences"]


async def mail(engine: AsyncEngine, account_id: int, category: str) -> list[Notification]:
    """The account's email history in one category, oldest first."""
    return await rows(engine, select(Notification).where(
        Notification.account_id == account_id, Notification.category == category,
    ).order_by(Notification.id))


def by_subject(notices: list[Notification]) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    for notice in notices:
        grouped.setdefault(notice.subject, set()).add(notice.recipient)
    return grouped


# --- the login's own setting ---------------------------------------------------------------


async def test_a_login_receives_every_category_until_it_opts_out(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    read = await gql.execute(READ, token=owner.token)
    assert read["data"]["viewer"]["user"] == {"id": owner.user_id, "emailPreferences": ALL}

    # Repeats do not matter; the answer is in the enum's order.
    result = await receive(gql, owner.token, ["CREDIT", "GENERAL", "CREDIT"])
    assert result["data"]["setEmailPreferences"] == {
        "user": {"id": owner.user_id, "emailPreferences": ["GENERAL", "CREDIT"]}, "userErrors": [],
    }
    read = await gql.execute(READ, token=owner.token)
    assert read["data"]["viewer"]["user"]["emailPreferences"] == ["GENERAL", "CREDIT"]
    (user,) = await rows(engine, select(User).where(User.id == pk(owner.user_id)))
    assert user.email_opt_outs == ["INVOICE", "PRODUCT", "SUPPORT"]

    # Audited on no account when it changes, not when it stays as it was.
    assert await received(gql, owner.token, ["GENERAL", "CREDIT"]) == ["GENERAL", "CREDIT"]
    assert await received(gql, owner.token, []) == []
    events = await rows(engine, select(AuditEvent).where(
        AuditEvent.action == "user.email_preferences_set", AuditEvent.target_id == pk(owner.user_id),
    ).order_by(AuditEvent.id))
    assert [(e.account_id, e.before, e.after) for e in events] == [
        (None, {"receive": ALL}, {"receive": ["GENERAL", "CREDIT"]}),
        (None, {"receive": ["GENERAL", "CREDIT"]}, {"receive": []}),
    ]
    assert await received(gql, owner.token, ALL) == ALL


async def test_unknown_categories_and_anonymous_callers_are_refused(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    for value in ("SECURITY", "general", "NEWSLETTER"):
        result = await receive(gql, owner.token, [value])
        assert result.get("data") is None
        assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", result
    literal = await gql.execute(
        "mutation { setEmailPreferences(input: {receive: [SECURITY]}) { userErrors { code } } }",
        token=owner.token,
    )
    assert literal["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    anonymous = (await gql.post(SET, {"input": {"receive": []}})).json()
    assert anonymous["data"] is None
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    read = await gql.execute(READ, token=owner.token)
    assert read["data"]["viewer"]["user"]["emailPreferences"] == ALL


async def test_another_users_preferences_are_not_readable(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    sub = await new_sub_account(gql, owner.token, owner.account.id, ["CONTACTS_MANAGE"])
    await received(gql, sub.token, ["SUPPORT"])
    for token, me in ((owner.token, owner.email), (sub.token, sub.email)):
        result = await gql.execute(MEMBERS, {"n": owner.account.number}, token=token)
        members = {m["user"]["email"]: m["user"]["emailPreferences"]
                   for m in result["data"]["viewer"]["account"]["members"]}
        assert members == {
            owner.email: ALL if me == owner.email else None,
            sub.email: ["SUPPORT"] if me == sub.email else None,
        }


async def test_the_outbox_drops_opted_out_logins_in_every_category_but_security(engine: AsyncEngine) -> None:
    """The one writer every categorised email passes through (tickets, payments, reminders,
    notices, invoices): an opted-out login gets no row, whatever the case of its address;
    anyone else, and security mail, is untouched."""
    _, email, _ = await new_user(engine)
    async with create_session_factory(engine)() as session:
        user = await session.scalar(select(User).where(User.email == email))
        assert user is not None
        user.email_opt_outs = ["SUPPORT", "PRODUCT"]
        await session.flush()
        queued = {
            category.value: [row.recipient for row in await queue_email(
                session, recipients=[email.upper(), "not-a-login@example.com"], category=category,
                subject="Hello", body="Hello.", account_id=None,
            )]
            for category in EmailPreference
        }
        security = queue_security_email(session, recipient=email, subject="Reset", body="Link.")
        await session.rollback()
    assert queued == {
        "GENERAL": [email, "not-a-login@example.com"], "INVOICE": [email, "not-a-login@example.com"],
        "SUPPORT": ["not-a-login@example.com"], "PRODUCT": ["not-a-login@example.com"],
        "CREDIT": [email, "not-a-login@example.com"],
    }
    assert security.recipient == email


async def test_security_mail_is_never_optional(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    assert await received(gql, owner.token, []) == []
    result = await gql.execute(REQUEST_RESET, {"input": {"email": owner.email}})
    assert result == {"data": {"requestPasswordReset": {"ok": True}}}
    assert await emailed_token(engine, owner.email, "reset-password")


# --- each contact preference decides something ---------------------------------------------


async def test_an_invoice_run_skips_logins_that_opted_out_of_invoices(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    """INVOICE: the bill-to address (the owner here: no billing contact) and every contact with
    INVOICE get the invoice email, except logins that opted out of INVOICE."""
    customer = await seeded_customer(engine)
    _, reader_email, reader_token = await new_user(engine)
    books = unique_email("books")
    await add_contact(gql, customer.token, customer.gid(), email=books, emailPreferences=["INVOICE"])
    await add_contact(gql, customer.token, customer.gid(), email=reader_email, emailPreferences=["INVOICE"])
    await add_contact(gql, customer.token, customer.gid(), emailPreferences=["GENERAL", "CREDIT"])
    await received(gql, customer.token, ["GENERAL"])
    await received(gql, reader_token, [])
    async with create_session_factory(engine)() as session:
        session.add(Charge(account_id=customer.account_ids[0], payer_account_id=customer.account_ids[0],
                           kind=ChargeKind.CREDIT_PURCHASE, period=PERIOD, description="Credits",
                           quantity=1, unit_price=1_000, amount=1_000, currency="EUR"))
        await session.commit()

    result = await gql.execute(RUN, {"input": {"period": PERIOD}}, token=tokens["finance"])
    assert result["data"]["runInvoicing"]["userErrors"] == [], result
    emails = await mail(engine, customer.account_ids[0], "INVOICE")
    assert [email.recipient for email in emails] == [books]
    assert emails[0].subject.startswith("Invoice INV-2011-06-")


async def test_a_low_credit_reminder_copies_the_credit_contacts(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    """CREDIT: the reminder's recipients (else the owner), and a copy to each CREDIT contact."""
    customer = await seeded_customer(engine, accounts=2, balances=[100, 100])
    ops = unique_email("ops")
    copies = []
    for index in (0, 1):
        copy = unique_email("treasury")
        copies.append(copy)
        await add_contact(gql, customer.token, customer.gid(index), email=copy, emailPreferences=["CREDIT"])
        await add_contact(gql, customer.token, customer.gid(index), emailPreferences=["INVOICE", "GENERAL"])
    await set_reminder(gql, customer.token, customer.gid(0), threshold=50, recipients=[ops])
    await set_reminder(gql, customer.token, customer.gid(1), threshold=50)
    await use(gql, tokens["finance"], customer.gid(0), 60)
    assert [n.recipient for n in await mail(engine, customer.account_ids[0], "CREDIT")] == [ops, copies[0]]

    # No recipients set: the owner, unless its login opted out of CREDIT; the copy still goes.
    await received(gql, customer.token, ["INVOICE"])
    await use(gql, tokens["finance"], customer.gid(1), 60)
    assert [n.recipient for n in await mail(engine, customer.account_ids[1], "CREDIT")] == [copies[1]]


async def test_sub_account_changes_are_general_notices(gql: GraphQLClient, engine: AsyncEngine) -> None:
    """GENERAL: a sub-account joining, its permissions changing and its removal are told to
    the owner and every GENERAL contact; not to the sub-account, nor to other contacts."""
    owner = await new_customer(gql, "Notice Holdings")
    account_id = pk(owner.account.id)
    watcher = unique_email("watcher")
    await add_contact(gql, owner.token, owner.account.id, email=watcher, emailPreferences=["GENERAL"])
    await add_contact(gql, owner.token, owner.account.id, emailPreferences=["INVOICE", "CREDIT"])
    sub = await new_sub_account(gql, owner.token, owner.account.id, ["TICKETS_READ", "SERVICES_READ"])
    notices = await mail(engine, account_id, "GENERAL")
    assert by_subject(notices) == {"New sub-account on Notice Holdings": {owner.email, watcher}}
    assert sub.email in notices[0].body and "SERVICES_READ, TICKETS_READ" in notices[0].body

    changed = await set_permissions(gql, owner.token, owner.account.id, sub.user_id, ["TICKETS_READ"])
    assert changed["data"]["setSubAccountPermissions"]["userErrors"] == []
    await set_permissions(gql, owner.token, owner.account.id, sub.user_id, ["TICKETS_READ"])  # no change
    notices = await mail(engine, account_id, "GENERAL")
    subject = "Sub-account permissions changed on Notice Holdings"
    assert by_subject(notices)[subject] == {owner.email, watcher} and len(notices) == 4
    assert "Before: SERVICES_READ, TICKETS_READ\nNow: TICKETS_READ" in notices[-1].body

    # The owner's own opt-out holds for notices too.
    await received(gql, owner.token, ["INVOICE"])
    deleted = await gql.execute(DELETE_CONTACT, {"input": {"contactId": sub.contact_id}}, token=owner.token)
    assert deleted["data"]["deleteContact"]["userErrors"] == []
    notices = await mail(engine, account_id, "GENERAL")
    assert by_subject(notices)["Sub-account removed from Notice Holdings"] == {watcher}
    assert "Permissions revoked: TICKETS_READ" in notices[-1].body
    assert sub.email not in {notice.recipient for notice in notices}
