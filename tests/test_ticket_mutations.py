"""openTicket, replyToTicket, closeTicket over HTTP, and who is emailed when staff replies."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.audit import AuditEvent
from models.database import create_session_factory
from models.notifications import Notification
from models.tickets import AuthorKind, Department, Ticket, TicketMessage, TicketStatus
from schema.relay import encode_global_id
from tests.conftest import GraphQLClient
from tests.customers import Customer, add_contact, count_rows, new_customer, new_sub_account, pk

OPEN = """
mutation($input: OpenTicketInput!) {
  openTicket(input: $input) {
    ticket { id number subject department status ccEmails openedBy { name email isContact }
             messages { authorKind body via attachments { filename } } }
    userErrors { field message code }
  }
}
"""
REPLY = """
mutation($input: ReplyToTicketInput!) {
  replyToTicket(input: $input) {
    ticket { id status messages { authorKind authorName body } }
    userErrors { field message code }
  }
}
"""
CLOSE = """
mutation($input: CloseTicketInput!) {
  closeTicket(input: $input) { ticket { id status } userErrors { field message code } }
}
"""
NOTIFICATIONS = """
query($n: String!) { viewer { account(number: $n) {
  notifications(first: 50) { edges { node { recipient category subject sentAt } } }
} } }
"""


async def open_ticket(gql: GraphQLClient, token: str, account_id: str, **fields: Any) -> dict[str, Any]:
    values = {"accountId": account_id, "subject": "Mailbox full", "body": "Please help.", **fields}
    return await gql.execute(OPEN, {"input": values}, token=token)


async def opened(gql: GraphQLClient, token: str, account_id: str, **fields: Any) -> dict[str, Any]:
    result = await open_ticket(gql, token, account_id, **fields)
    payload = result["data"]["openTicket"]
    assert payload["userErrors"] == [], result
    return payload["ticket"]


async def reply(gql: GraphQLClient, token: str, ticket_id: str, body: str = "On it.") -> dict[str, Any]:
    return await gql.execute(REPLY, {"input": {"ticketId": ticket_id, "body": body}}, token=token)


async def outbox_for(engine: AsyncEngine, ticket_id: str) -> list[str]:
    async with create_session_factory(engine)() as session:
        rows = await session.scalars(select(Notification.recipient).where(
            Notification.related_type == "ticket", Notification.related_id == pk(ticket_id)
        ).order_by(Notification.id))
        return list(rows)


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["userErrors"]]


async def with_contacts(gql: GraphQLClient) -> tuple[Customer, list[str], str]:
    """A customer with two support contacts (no email preferences), one ordinary contact with
    the SUPPORT preference (it gets copies of what goes to the owner), one without."""
    owner = await new_customer(gql)
    support = []
    for name in ("Sue Support", "Sid Support"):
        contact = await add_contact(gql, owner.token, owner.account.id, name=name, isSupportContact=True)
        support.append(contact["contact"]["email"])
    copied = await add_contact(gql, owner.token, owner.account.id, name="Otto Other", emailPreferences=["SUPPORT"])
    await add_contact(gql, owner.token, owner.account.id, name="Nina None", emailPreferences=["PRODUCT"])
    return owner, support, copied["contact"]["email"]


# --- the ticket's life ----------------------------------------------------------------------


async def test_open_reply_close_move_the_status_as_design_says(
    gql: GraphQLClient, tokens: dict[str, str], engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    ticket = await opened(gql, owner.token, owner.account.id, subject="  DNS   change ",
                          body=" Add a record. ", department="BILLING", ccEmails=["CC@Example.com"])
    assert ticket["status"] == "OPEN" and ticket["subject"] == "DNS change"
    assert ticket["department"] == "BILLING" and ticket["ccEmails"] == ["cc@example.com"]
    assert ticket["openedBy"] == {"name": "Owen Owner", "email": owner.email, "isContact": False}
    assert ticket["messages"] == [
        {"authorKind": "CUSTOMER", "body": "Add a record.", "via": "PORTAL", "attachments": []}
    ]

    answered = (await reply(gql, tokens["agent"], ticket["id"], "Done."))["data"]["replyToTicket"]
    assert answered["ticket"]["status"] == "ANSWERED"
    assert answered["ticket"]["messages"][-1] == {"authorKind": "STAFF", "authorName": "Alex Morgan", "body": "Done."}
    customer = (await reply(gql, owner.token, ticket["id"], "Thanks, one more."))["data"]["replyToTicket"]
    assert customer["ticket"]["status"] == "CUSTOMER_REPLY"
    closed = await gql.execute(CLOSE, {"input": {"ticketId": ticket["id"]}}, token=owner.token)
    assert closed["data"]["closeTicket"]["ticket"]["status"] == "CLOSED"

    messages = await count_rows(engine, TicketMessage, TicketMessage.ticket_id == pk(ticket["id"]))
    late = (await reply(gql, tokens["agent"], ticket["id"], "Anything else?"))["data"]["replyToTicket"]
    assert codes(late) == ["TICKET_CLOSED"] and late["ticket"] is None
    assert codes((await reply(gql, owner.token, ticket["id"]))["data"]["replyToTicket"]) == ["TICKET_CLOSED"]
    again = await gql.execute(CLOSE, {"input": {"ticketId": ticket["id"]}}, token=owner.token)
    assert codes(again["data"]["closeTicket"]) == ["TICKET_CLOSED"]
    assert await count_rows(engine, TicketMessage, TicketMessage.ticket_id == pk(ticket["id"])) == messages
    # The staff reply was audited; the customer's own steps are not staff actions.
    async with create_session_factory(engine)() as session:
        actions = list(await session.scalars(select(AuditEvent.action).where(
            AuditEvent.target_type == "ticket", AuditEvent.target_id == pk(ticket["id"])
        )))
        staff = list(await session.scalars(select(AuditEvent.actor_is_staff).where(
            AuditEvent.target_type == "ticket", AuditEvent.target_id == pk(ticket["id"])
        )))
    assert actions == ["ticket.replied"] and staff == [True]


async def test_ticket_numbers_continue_after_the_highest(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    async with create_session_factory(engine)() as session:
        # A number outside the TKT-<digits> scheme (say, imported) does not confuse the count.
        session.add(Ticket(account_id=pk(owner.account.id), number=f"TKT-OLD-{pk(owner.account.id)}",
                           subject="Imported", department=Department.TECHNICAL,
                           opened_by_name="Owen Owner", opened_by_email=owner.email))
        await session.commit()
        numbers = [n for n in await session.scalars(select(Ticket.number)) if re.fullmatch(r"TKT-\d+", n)]
    highest = max(int(number.removeprefix("TKT-")) for number in numbers)
    assert highest >= 100004  # the demo's tickets are there
    first = await opened(gql, owner.token, owner.account.id)
    second = await opened(gql, owner.token, owner.account.id)
    assert first["number"] == f"TKT-{highest + 1}"
    assert second["number"] == f"TKT-{highest + 2}"


async def test_bad_tickets_are_refused_and_nothing_written(
    gql: GraphQLClient, engine: AsyncEngine, settings: Any
) -> None:
    owner = await new_customer(gql)
    limit = settings.max_ticket_body_chars
    cases = [
        ({"subject": "   "}, "SUBJECT_EMPTY", ["subject"]),
        ({"subject": "s" * 201}, "SUBJECT_TOO_LONG", ["subject"]),
        ({"body": " \n "}, "BODY_EMPTY", ["body"]),
        ({"body": "b" * (limit + 1)}, "BODY_TOO_LONG", ["body"]),
        ({"ccEmails": ["ok@example.com", "not an email"]}, "INVALID_EMAIL", ["ccEmails", "1"]),
        ({"ccEmails": [f"cc{i}@example.com" for i in range(11)]}, "TOO_MANY_CC", ["ccEmails"]),
    ]
    for fields, code, field in cases:
        payload = (await open_ticket(gql, owner.token, owner.account.id, **fields))["data"]["openTicket"]
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)], fields
        assert payload["ticket"] is None
    too_long = (await open_ticket(gql, owner.token, owner.account.id, body="b" * (limit + 1)))
    assert f"{limit:,}" in too_long["data"]["openTicket"]["userErrors"][0]["message"]
    # Exactly at the limit is fine.
    assert (await opened(gql, owner.token, owner.account.id, body="b" * limit))["status"] == "OPEN"
    # A 100 kB body does not even reach the resolver: the request is over the size limit.
    huge = await gql.post(OPEN, {"input": {"accountId": owner.account.id, "subject": "Big",
                                           "body": "x" * 100_000}}, token=owner.token)
    assert huge.status_code == 413
    assert huge.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await count_rows(engine, Ticket, Ticket.account_id == pk(owner.account.id)) == 1


async def test_who_may_open_reply_and_close(gql: GraphQLClient, tokens: dict[str, str], engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    ticket = await opened(gql, owner.token, owner.account.id)
    reader = await new_sub_account(gql, owner.token, owner.account.id, ["TICKETS_READ"])
    stranger = await new_customer(gql)

    def error(result: dict[str, Any]) -> dict[str, Any]:
        return result["errors"][0]["extensions"]

    assert error(await reply(gql, stranger.token, ticket["id"]))["code"] == "NOT_FOUND"
    assert error(await gql.execute(CLOSE, {"input": {"ticketId": ticket["id"]}}, token=stranger.token))["code"] == "NOT_FOUND"
    assert error(await reply(gql, reader.token, ticket["id"])) == {"code": "FORBIDDEN", "permission": "TICKETS_WRITE"}
    assert error(await open_ticket(gql, reader.token, owner.account.id))["permission"] == "TICKETS_WRITE"
    assert error(await open_ticket(gql, stranger.token, owner.account.id))["code"] == "NOT_FOUND"
    # Billing staff hold no TICKETS_WRITE; support staff answer but do not open tickets.
    assert error(await reply(gql, tokens["finance"], ticket["id"]))["permission"] == "TICKETS_WRITE"
    assert error(await open_ticket(gql, tokens["agent"], owner.account.id))["code"] == "FORBIDDEN"
    unknown = encode_global_id("Ticket", 987_654_321)
    assert error(await reply(gql, owner.token, unknown))["code"] == "NOT_FOUND"
    assert await count_rows(engine, TicketMessage, TicketMessage.ticket_id == pk(ticket["id"])) == 1
    assert await count_rows(engine, Ticket, Ticket.account_id == pk(owner.account.id)) == 1


# --- DESIGN §1: who is emailed when staff replies ---------------------------------------------


async def test_owner_opened_ticket_emails_the_owner_and_every_support_contact_plus_ccs(
    gql: GraphQLClient, tokens: dict[str, str], engine: AsyncEngine
) -> None:
    owner, support, copied = await with_contacts(gql)
    await new_sub_account(gql, owner.token, owner.account.id, ["TICKETS_READ"])  # not emailed
    ticket = await opened(gql, owner.token, owner.account.id, ccEmails=["boss@example.com"])
    await reply(gql, owner.token, ticket["id"], "More detail.")  # a customer reply emails no one
    assert await outbox_for(engine, ticket["id"]) == []
    await reply(gql, tokens["agent"], ticket["id"], "Fixed.")
    assert sorted(await outbox_for(engine, ticket["id"])) == sorted(
        [owner.email, *support, copied, "boss@example.com"]
    )
    # The owner reads the same in the account's email history (EMAILS_READ), not sent yet.
    history = await gql.execute(NOTIFICATIONS, {"n": owner.account.number}, token=owner.token)
    rows = [edge["node"] for edge in history["data"]["viewer"]["account"]["notifications"]["edges"]
            if edge["node"]["subject"].startswith(f"[{ticket['number']}]")]
    assert {row["recipient"] for row in rows} == {owner.email, *support, copied, "boss@example.com"}
    assert {(row["category"], row["sentAt"]) for row in rows} == {("SUPPORT", None)}
    assert all(row["subject"] == f"[{ticket['number']}] Mailbox full" for row in rows)


async def test_sub_account_opened_ticket_emails_the_opener_and_the_owner_plus_ccs(
    gql: GraphQLClient, tokens: dict[str, str], engine: AsyncEngine
) -> None:
    owner, _support, copied = await with_contacts(gql)
    dev = await new_sub_account(gql, owner.token, owner.account.id, ["TICKETS_READ", "TICKETS_WRITE"])
    ticket = await opened(gql, dev.token, owner.account.id, ccEmails=["pm@example.com"])
    await reply(gql, tokens["agent"], ticket["id"])
    # The owner is CC'd, so the SUPPORT copy goes too; the support contacts are not emailed.
    assert sorted(await outbox_for(engine, ticket["id"])) == sorted(
        [dev.email, owner.email, copied, "pm@example.com"]
    )


async def test_contact_opened_ticket_emails_the_contact_and_the_owner_only(
    gql: GraphQLClient, tokens: dict[str, str], engine: AsyncEngine
) -> None:
    owner, support, copied = await with_contacts(gql)
    writer = (await add_contact(gql, owner.token, owner.account.id, name="Wanda Writer"))["contact"]
    # A contact writes in by email (no login): the ticket is stored as the mail gateway would.
    async with create_session_factory(engine)() as session:
        row = Ticket(account_id=pk(owner.account.id), number=f"MAIL-{pk(writer['id'])}",
                     subject="Printer offline", department=Department.TECHNICAL,
                     status=TicketStatus.OPEN, opened_by_contact_id=pk(writer["id"]),
                     opened_by_name=writer["name"], opened_by_email=writer["email"])
        session.add(row)
        await session.flush()
        session.add(TicketMessage(ticket_id=row.id, author_name=writer["name"],
                                  author_kind=AuthorKind.CUSTOMER, body="It is offline."))
        await session.commit()
        ticket_id = encode_global_id("Ticket", row.id)
    result = await reply(gql, tokens["agent"], ticket_id, "Restarted it.")
    assert result["data"]["replyToTicket"]["ticket"]["status"] == "ANSWERED"
    recipients = await outbox_for(engine, ticket_id)
    assert sorted(recipients) == sorted([writer["email"], owner.email, copied])
    assert not set(recipients) & set(support)


async def test_concurrent_openers_get_distinct_numbers(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    results = await asyncio.gather(*(
        open_ticket(gql, owner.token, owner.account.id, subject=f"Issue {i}") for i in range(6)
    ))
    numbers = [result["data"]["openTicket"]["ticket"]["number"] for result in results]
    assert len(set(numbers)) == 6, results
    values = sorted(int(number.removeprefix("TKT-")) for number in numbers)
    assert values == list(range(values[0], values[0] + 6))
    assert await count_rows(engine, Ticket, Ticket.account_id == pk(owner.account.id)) == 6
