"""examples/spa, the example dashboard, in headless Chromium against a real demo gateway on
another origin (so CORS and the socket's origin check are part of the test).

The page is served by a small static server of its own; the browser may reach that server
and the gateway and nothing else. What is checked is what a person sees: the accounts, a
balance only where CREDITS_READ allows it, FORBIDDEN errors with the permission they need,
sign-in errors, the session renewed before it expires, a revoked session sending the page
back to sign-in, persisted queries (once the gateway has them), and a ticket reply made
elsewhere showing up without a reload (once the schema has subscriptions).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, Request, expect

from linkgate.demo import DEMO_PASSWORD
from schema import build_schema
from tests.browser import Traffic, browser_page, demo_gateway, eventually, needs_chromium
from tests.servers import Server

SPA = Path(__file__).resolve().parent.parent / "examples" / "spa"
HAS_SUBSCRIPTIONS = build_schema().get_type_by_name("Subscription") is not None

pytestmark = needs_chromium


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


@pytest.fixture(scope="module")
def spa_origin() -> Iterator[str]:
    """examples/spa on a port of its own: a second origin, as a real deployment has."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(SPA)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def gateway(spa_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with demo_gateway(tmp_path_factory.mktemp("spa-gateway"), LINKGATE_CORS_ORIGINS=spa_origin) as server:
        yield server


@dataclass
class Spa:
    page: Page
    traffic: Traffic
    gateway: Server

    async def sign_in(self, email: str, password: str = DEMO_PASSWORD) -> None:
        await self.page.get_by_label("Email").fill(email)
        await self.page.get_by_label("Password").fill(password)
        await self.page.get_by_role("button", name="Sign in").click()

    def account(self, number: str) -> Any:
        return self.page.locator(f'.account[data-number="{number}"]')


@pytest.fixture
async def spa(spa_origin: str, gateway: Server, request: pytest.FixtureRequest) -> AsyncIterator[Spa]:
    query = getattr(request, "param", "")
    async with browser_page(spa_origin, gateway.base) as (page, traffic):
        await page.goto(f"{spa_origin}/index.html?gateway={gateway.base}/graphql{query}")
        yield Spa(page, traffic, gateway)
        traffic.assert_clean()


def gql(base: str, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, headers=headers, timeout=30)
    return dict(answer.json())


def login(base: str, email: str) -> str:
    answer = gql(base, "mutation($input: LoginInput!) { login(input: $input) { token } }",
                 {"input": {"email": email, "password": DEMO_PASSWORD}})
    return str(answer["data"]["login"]["token"])


async def test_the_owner_sees_every_account_with_its_balance(spa: Spa) -> None:
    await spa.sign_in("olivia@northwind.example")
    await expect(spa.page.locator("#who")).to_contain_text("olivia@northwind.example")
    await expect(spa.page.locator(".account")).to_have_count(4)
    for number in ("ACC-100001", "ACC-100002", "ACC-100003", "ACC-100004"):
        await expect(spa.account(number).locator("[data-balance]")).to_contain_text(" credits")
    await expect(spa.account("ACC-100001")).to_contain_text("Northwind Head Office")
    await expect(spa.account("ACC-100001")).to_contain_text("a month")  # prices: INVOICES_READ
    await expect(spa.page.locator("#problems")).to_have_text("None.")
    # Across origins: the gateway's CORS answer let every request through.
    assert any(url.startswith(spa.gateway.base) for url in spa.traffic.requested)


async def test_a_sub_account_without_credits_read_sees_no_balance_and_why_prices_are_missing(spa: Spa) -> None:
    await spa.sign_in("dev@northwind.example")  # SERVICES_READ, TICKETS_READ, TICKETS_WRITE
    await expect(spa.page.locator(".account")).to_have_count(2)
    await expect(spa.account("ACC-100001")).to_contain_text("Northwind Head Office")
    await expect(spa.account("ACC-100003")).to_contain_text("Northwind Logistics")
    await expect(spa.account("ACC-100001")).to_contain_text("Business Hosting Pro — price not shown")
    await expect(spa.page.locator("[data-balance]")).to_have_count(0)
    await expect(spa.page.locator(".balance")).to_have_count(0)
    forbidden = spa.page.locator('#problems li[data-code="FORBIDDEN"]')
    await expect(forbidden).to_have_count(1)
    await expect(forbidden).to_contain_text("(needs INVOICES_READ)")
    await expect(forbidden).to_contain_text("monthlyPrice")


async def test_a_wrong_password_shows_the_user_error(spa: Spa) -> None:
    await spa.sign_in("dev@northwind.example", "not-the-password")
    await expect(spa.page.locator("#sign-in-message")).to_contain_text("INVALID_CREDENTIALS")
    await expect(spa.page.locator("#dashboard")).to_be_hidden()


async def test_a_revoked_session_goes_back_to_sign_in(spa: Spa) -> None:
    await spa.sign_in("bill@northwind.example")
    await expect(spa.page.locator(".account")).not_to_have_count(0)
    # Its live socket signed in first, so the Reload below is what meets the ended session
    # (a socket signing in after the logout would be refused, and end it as well).
    await eventually(spa.traffic.acknowledged)
    elsewhere = login(spa.gateway.base, "bill@northwind.example")
    ended = gql(spa.gateway.base, "mutation { logout(input: {everywhere: true}) { ok } }", token=elsewhere)
    assert ended["data"]["logout"]["ok"], ended
    await spa.page.get_by_role("button", name="Reload").click()
    await expect(spa.page.locator("#sign-in")).to_be_visible()
    await expect(spa.page.locator("#sign-in-message")).to_contain_text("session ended")
    await expect(spa.page.locator("#dashboard")).to_be_hidden()


async def test_the_session_is_renewed_before_the_token_expires(spa_origin: str, gateway: Server) -> None:
    async with browser_page(spa_origin, gateway.base) as (page, traffic):
        await page.clock.install()
        await page.goto(f"{spa_origin}/index.html?gateway={gateway.base}/graphql")
        spa = Spa(page, traffic, gateway)
        refreshes: list[Request] = []
        page.on("request", lambda request: refreshes.append(request)
                if "refreshSession" in (request.post_data or "") else None)
        await spa.sign_in("olivia@northwind.example")
        await expect(page.locator(".account")).to_have_count(4)
        await expect(page.locator("#session")).to_have_attribute("data-refreshes", "0")
        await page.clock.run_for("14:30")  # the token lasts 15 minutes; renewed a minute before
        await expect(page.locator("#session")).to_have_attribute("data-refreshes", "1")
        assert len(refreshes) == 1
        await page.get_by_role("button", name="Reload").click()  # with the new token
        await expect(page.locator(".account")).to_have_count(4)
        await expect(page.locator("#problems")).to_have_text("None.")
        traffic.assert_clean()


def gateway_has_persisted_queries(base: str) -> bool:
    answer = httpx.post(f"{base}/graphql", json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}})
    codes = {error.get("extensions", {}).get("code") for error in answer.json().get("errors", [])}
    return "PERSISTED_QUERY_NOT_FOUND" in codes


@pytest.mark.parametrize("spa", ["&apq=on"], indirect=True)
async def test_persisted_queries_send_the_hash_and_the_query_only_once(spa: Spa) -> None:
    if not gateway_has_persisted_queries(spa.gateway.base):
        pytest.skip("the gateway answers no PERSISTED_QUERY_NOT_FOUND yet (automatic persisted queries)")
    bodies: list[dict[str, Any]] = []
    spa.page.on("request", lambda request: bodies.append(json.loads(request.post_data))
                if request.method == "POST" and request.post_data else None)
    await spa.sign_in("olivia@northwind.example")
    await expect(spa.page.locator(".account")).to_have_count(4)
    await spa.page.get_by_role("button", name="Reload").click()
    await eventually(lambda: sum(1 for body in bodies if "query" not in body) >= 4)
    await expect(spa.page.locator(".account")).to_have_count(4)
    hashed = [body for body in bodies if body.get("extensions", {}).get("persistedQuery")]
    assert hashed and len(hashed) == len(bodies), bodies
    with_query = [body for body in bodies if "query" in body]
    assert len({body["extensions"]["persistedQuery"]["sha256Hash"] for body in with_query}) == len(with_query), (
        "each document's text is sent once, when the gateway does not know its hash yet"
    )


@pytest.mark.skipif(not HAS_SUBSCRIPTIONS, reason="the schema has no Subscription type yet")
async def test_a_reply_made_elsewhere_shows_up_without_a_reload(spa: Spa) -> None:
    await spa.sign_in("dev@northwind.example")
    try:
        await expect(spa.page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=15_000)
    except AssertionError:
        events = await spa.page.locator("#events").inner_text()
        raise AssertionError(f"live updates never started; the page's events: {events!r}") from None
    await eventually(spa.traffic.subscribed)
    await spa.page.wait_for_timeout(500)  # the server starts listening (the protocol confirms nothing)
    token = login(spa.gateway.base, "olivia@northwind.example")
    tickets = gql(spa.gateway.base, '{ viewer { account(number: "ACC-100001") { tickets(first: 1) '
                  "{ edges { node { id number } } } } } }", token=token)
    ticket = tickets["data"]["viewer"]["account"]["tickets"]["edges"][0]["node"]
    answer = gql(spa.gateway.base, "mutation($input: ReplyToTicketInput!) { replyToTicket(input: $input) "
                 "{ userErrors { code } } }", {"input": {"ticketId": ticket["id"], "body": "Fixed it live"}}, token)
    assert answer["data"]["replyToTicket"]["userErrors"] == [], answer
    event = spa.page.locator("#events li").filter(has_text="Fixed it live")
    await expect(event).to_have_count(1, timeout=15_000)
    await expect(event).to_contain_text(ticket["number"])
    await expect(spa.page.locator(".account")).to_have_count(2)  # the same page: no reload
