"""Security mail is no object of the API (security review D).

Mail with no account (invitations, sign-up links, password resets, sign-in alerts) is for its
recipient alone. ``node(id:)`` used to hand it to staff, whose permissions cover every account,
because such a notification stood for account 0. Now it answers as an unknown ID, for everyone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.database import create_session_factory
from models.notifications import Notification
from schema.relay import encode_global_id
from tests.conftest import GraphQLClient
from tests.customers import new_customer

NODE = "query($id: ID!) { node(id: $id) { id ... on Notification { recipient subject } } }"
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Notification { recipient subject } } }"
REQUEST_RESET = "mutation($input: RequestPasswordResetInput!) { requestPasswordReset(input: $input) { ok } }"


def not_found(result: dict[str, Any], global_id: str) -> bool:
    """Null with NOT_FOUND, worded exactly as for an ID that never existed."""
    (error,) = result["errors"]
    return (error["extensions"] == {"code": "NOT_FOUND"}
            and error["message"] == f"No object has the ID `{global_id}`.")


async def test_nobody_reaches_security_mail_by_id(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    customer = await new_customer(gql)
    reset = await gql.execute(REQUEST_RESET, {"input": {"email": customer.email}})
    assert reset == {"data": {"requestPasswordReset": {"ok": True}}}
    async with create_session_factory(engine)() as session:
        security = list(await session.scalars(
            select(Notification.id).where(Notification.recipient == customer.email,
                                          Notification.account_id.is_(None))
        ))
        account_mail = await session.scalar(
            select(Notification.id).where(Notification.account_id.is_not(None)).limit(1)
        )
    assert len(security) >= 2  # the sign-up link and the reset link
    assert account_mail is not None  # the demo seeds an email history

    callers = {"agent": tokens["agent"], "finance": tokens["finance"], "olivia": tokens["olivia"],
               "recipient": customer.token, "anonymous": None}
    for pk in security:
        global_id = encode_global_id("Notification", pk)
        for name, token in callers.items():
            result = await gql.execute(NODE, {"id": global_id}, token=token)
            assert result["data"] == {"node": None}, (name, result)
            assert not_found(result, global_id), (name, result)
        listed = await gql.execute(NODES, {"ids": [global_id]}, token=tokens["agent"])
        assert listed["data"] == {"nodes": [None]} and not_found(listed, global_id), listed

    # An account's own email history is still there for staff with EMAILS_READ.
    global_id = encode_global_id("Notification", account_mail)
    seen = await gql.execute(NODE, {"id": global_id}, token=tokens["agent"])
    assert "errors" not in seen and seen["data"]["node"]["id"] == global_id, seen


async def test_nobody_reaches_a_logins_own_audit_events_by_id(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    """Audit events of no account (a login's two-factor turned on or off) are no object of
    the API either: staff permissions cover every account id, so no stand-in id would do."""
    from models.audit import AuditEvent

    customer = await new_customer(gql)
    async with create_session_factory(engine)() as session:
        event = AuditEvent(account_id=None, actor_user_id=None, action="user.two_factor_enabled",
                           target_type="user", target_id=None)
        session.add(event)
        await session.commit()
        event_id = event.id
    global_id = encode_global_id("AuditEvent", event_id)
    query = "query($id: ID!) { node(id: $id) { id ... on AuditEvent { action } } }"
    for token in (tokens["agent"], tokens["finance"], customer.token, None):
        result = await gql.execute(query, {"id": global_id}, token=token)
        assert result["data"] == {"node": None} and not_found(result, global_id), result
