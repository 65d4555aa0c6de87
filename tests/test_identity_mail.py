"""The identity emails end to end: each link is read from a real SMTP server (aiosmtpd), as
the recipient's mail client would show it, followed, and works exactly once.

The app runs on a database of its own here, so delivering its whole outbox sends only the
mail these tests caused.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from email.message import Message
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.app import create_app
from linkgate.migrations import upgrade_database
from linkgate.settings import Settings
from models.database import create_engine, create_session_factory
from models.notifications import Notification
from resolvers.delivery import SmtpServer, deliver_notifications
from tests.conftest import TEST_SECRET, GraphQLClient, client_for
from tests.customers import (
    ACCEPT_INVITATION, ACTIVATE, CONFIRM_SIGN_UP, PASSWORD, SIGN_UP, add_contact, permissions_on,
    unique_email,
)
from tests.test_delivery import SENDER, Mailbox, mailbox  # noqa: F401  (the SMTP sink fixture)

PUBLIC_URL = "https://dashboard.example.test"
RESET = """
mutation($input: ResetPasswordInput!) { resetPassword(input: $input) { ok userErrors { code } } }
"""
LOGIN = "mutation($input: LoginInput!) { login(input: $input) { token userErrors { code } } }"


@pytest.fixture
async def own_app(empty_database: str) -> AsyncIterator[tuple[Any, AsyncEngine]]:
    await asyncio.to_thread(upgrade_database, empty_database)
    engine = create_engine(empty_database)
    settings = Settings(database_url=empty_database, secret_key=TEST_SECRET,
                        public_url=PUBLIC_URL, answer_floor_seconds=0)
    yield create_app(settings, engine=engine), engine
    await engine.dispose()


async def deliver(engine: AsyncEngine, port: int) -> None:
    report = await deliver_notifications(
        create_session_factory(engine), smtp=SmtpServer(hostname="127.0.0.1", port=port), sender=SENDER,
    )
    assert report.failed == 0, report


def link_in(messages: list[Message], recipient: str, path: str) -> str:
    """The one link to ``path`` in the newest message to ``recipient``."""
    mine = [message for message in messages if message["To"] == recipient]
    assert mine, f"no mail to {recipient}"
    body = mine[-1].get_payload(decode=True).decode("utf-8")  # type: ignore[union-attr]
    links = re.findall(rf"{re.escape(PUBLIC_URL)}/{path}#token=\S+", body)
    assert len(links) == 1, body
    return links[0]


def token_of(link: str) -> str:
    return link.split("#token=", 1)[1]


async def test_sign_up_and_password_reset_links_arrive_by_smtp_and_work_once(
    own_app: tuple[Any, AsyncEngine], mailbox: tuple[Mailbox, int],  # noqa: F811
) -> None:
    app, engine = own_app
    sink, port = mailbox
    email = unique_email("mailed")
    async with client_for(app) as http:
        gql = GraphQLClient(http)
        await gql.execute(SIGN_UP, {"input": {"email": email, "password": PASSWORD, "name": "Mae Mailed",
                                              "accountName": "Mailed Ltd"}})
        await deliver(engine, port)
        sign_up_link = link_in(sink.messages, email, "confirm-sign-up")
        first = await gql.execute(CONFIRM_SIGN_UP, {"input": {"token": token_of(sign_up_link), "password": PASSWORD}})
        again = await gql.execute(CONFIRM_SIGN_UP, {"input": {"token": token_of(sign_up_link), "password": PASSWORD}})
        assert first["data"]["confirmSignUp"]["account"]["name"] == "Mailed Ltd"
        assert again["data"]["confirmSignUp"]["userErrors"] == [
            {"field": ["token"], "message": again["data"]["confirmSignUp"]["userErrors"][0]["message"],
             "code": "INVALID_TOKEN"}]

        await gql.execute("mutation($e: String!) { requestPasswordReset(input: {email: $e}) { ok } }",
                          {"e": email})
        await deliver(engine, port)
        reset_link = link_in(sink.messages, email, "reset-password")
        assert (await gql.execute(RESET, {"input": {"token": token_of(reset_link), "password": "mailed-new-1"}})
                )["data"]["resetPassword"] == {"ok": True, "userErrors": []}
        assert (await gql.execute(RESET, {"input": {"token": token_of(reset_link), "password": "mailed-new-2"}})
                )["data"]["resetPassword"]["userErrors"] == [{"code": "INVALID_TOKEN"}]
        signed_in = await gql.execute(LOGIN, {"input": {"email": email, "password": "mailed-new-1"}})
        assert signed_in["data"]["login"]["token"]
        await deliver(engine, port)

    subjects = [message["Subject"] for message in sink.messages if message["To"] == email]
    assert subjects == ["Confirm your Linkgate sign-up", "Reset your Linkgate password",
                        "Your Linkgate password was changed"]
    # Once sent, the outbox keeps no usable token: only the digests remain in the database.
    async with create_session_factory(engine)() as session:
        bodies = (await session.scalars(select(Notification.body).where(Notification.recipient == email))).all()
    assert bodies and all("#token=[sent]" in body or "#token=" not in body for body in bodies)
    assert not any(token_of(sign_up_link) in body or token_of(reset_link) in body for body in bodies)


async def test_an_invitation_arrives_by_smtp_and_its_link_works_once_and_only_for_itself(
    own_app: tuple[Any, AsyncEngine], mailbox: tuple[Mailbox, int],  # noqa: F811
) -> None:
    app, engine = own_app
    sink, port = mailbox
    owner_email, invitee = unique_email("inviter"), unique_email("invitee")
    async with client_for(app) as http:
        gql = GraphQLClient(http)
        owner = await _signed_up(gql, engine, port, sink, owner_email)
        contact = (await add_contact(gql, owner["token"], owner["account"]["id"], email=invitee))["contact"]
        invited = await gql.execute(ACTIVATE, {"input": {
            "contactId": contact["id"], "permissions": ["TICKETS_READ"]}}, token=owner["token"])
        assert invited["data"]["activateSubAccount"]["userErrors"] == []
        await deliver(engine, port)
        link = link_in(sink.messages, invitee, "accept-invitation")
        token = token_of(link)
        # Of another purpose, the invitation's token opens nothing.
        assert (await gql.execute(RESET, {"input": {"token": token, "password": "hijacked-pass"}})
                )["data"]["resetPassword"]["userErrors"] == [{"code": "INVALID_TOKEN"}]
        assert (await gql.execute(CONFIRM_SIGN_UP, {"input": {"token": token, "password": PASSWORD}})
                )["data"]["confirmSignUp"]["userErrors"][0]["code"] == "INVALID_TOKEN"
        refresh = await gql.execute(
            "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { userErrors { code } } }",
            {"t": token})
        assert refresh["data"]["refreshSession"]["userErrors"] == [{"code": "INVALID_TOKEN"}]
        accepted = await gql.execute(ACCEPT_INVITATION, {"input": {
            "token": token, "name": "Ivy Invitee", "password": "ivy's own password"}})
        payload = accepted["data"]["acceptInvitation"]
        assert payload["userErrors"] == [] and payload["token"]
        again = await gql.execute(ACCEPT_INVITATION, {"input": {
            "token": token, "name": "Mallory", "password": "mallory's password"}})
        assert again["data"]["acceptInvitation"]["userErrors"][0]["code"] == "INVALID_TOKEN"
        assert await permissions_on(gql, payload["token"], owner["account"]["number"]) == {"TICKETS_READ"}
        signed_in = await gql.execute(LOGIN, {"input": {"email": invitee, "password": "ivy's own password"}})
        assert signed_in["data"]["login"]["token"]
    subjects = [message["Subject"] for message in sink.messages if message["To"] == invitee]
    assert len(subjects) == 1 and subjects[0] == "You are invited to a Linkgate account"


async def _signed_up(gql: GraphQLClient, engine: AsyncEngine, port: int, sink: Mailbox, email: str) -> dict[str, Any]:
    """A new owner, signed up through the mailed confirmation link."""
    await gql.execute(SIGN_UP, {"input": {"email": email, "password": PASSWORD, "name": "Olga Owner",
                                          "accountName": "Inviting Ltd"}})
    await deliver(engine, port)
    confirmed = await gql.execute(CONFIRM_SIGN_UP, {"input": {
        "token": token_of(link_in(sink.messages, email, "confirm-sign-up")), "password": PASSWORD}})
    return confirmed["data"]["confirmSignUp"]
