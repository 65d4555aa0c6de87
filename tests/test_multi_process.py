"""Several server processes, one database (DESIGN §3 "Scaling out", §5 "Nothing lost").

Two separate ``uvicorn`` processes on two ports share this run's PostgreSQL database; requests
alternate between them. Transfers conserve credits, racing links and unlinks leave the link
invariants intact, and the login throttle counts failures from both processes together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.links import LinkMember
from tests.conftest import TEST_SECRET, GraphQLClient
from tests.customers import PASSWORD, new_customer, new_sub_account, register, unique_email
from tests.servers import UVICORN, clean_environment, running_server
from tests.test_credit_concurrency import ON_POSTGRESQL, _storm
from tests.test_links import LINK, UNLINK, by_enrollment
from tests.test_sub_accounts import set_permissions

pytestmark = pytest.mark.skipif(
    not ON_POSTGRESQL, reason="several server processes on one database: PostgreSQL"
)
LOGIN = "mutation($input: LoginInput!) { login(input: $input) { token userErrors { code } } }"


@pytest.fixture(scope="module")
def two_servers(database_url: str) -> Iterator[list[str]]:
    """Two separate uvicorn processes (two ports, two connection pools) on one database."""
    # The suite signs customers up from one address: no per-client cap on the mail it needs.
    environment = clean_environment(LINKGATE_DATABASE_URL=database_url, LINKGATE_SECRET_KEY=TEST_SECRET,
                                    LINKGATE_MAIL_LINKS_PER_CLIENT="1000000")
    with running_server(UVICORN, environment=environment) as first, \
            running_server(UVICORN, environment=environment) as second:
        yield [first.base, second.base]
    for server in (first, second):
        assert "Traceback" not in server.output and "ERROR" not in server.output, server.output[-3000:]


async def _clients(bases: list[str], source: str = "127.0.0.1") -> list[httpx.AsyncClient]:
    """``source``: a loopback address of the test's own, for per-client throttling."""
    return [
        httpx.AsyncClient(
            base_url=base, timeout=120,
            transport=httpx.AsyncHTTPTransport(local_address=source),
        )
        for base in bases
    ]


async def test_transfers_through_two_processes_conserve_credits(two_servers: list[str], engine: AsyncEngine) -> None:
    https = await _clients(two_servers)
    try:
        await _storm([GraphQLClient(http) for http in https], engine, accounts=4, transfers=240,
                     duplicated_keys=30)
    finally:
        for http in https:
            await http.aclose()


async def test_racing_links_and_unlinks_keep_the_invariants(two_servers: list[str], engine: AsyncEngine) -> None:
    """Two heads race to link the same accounts (one group per kind, no chains), and links
    race unlinks; every answer is a result or a userError, and the database stays valid."""
    https = await _clients(two_servers)
    try:
        first, second = GraphQLClient(https[0], engine), GraphQLClient(https[1], engine)
        owner = await new_customer(first, "Race Head One")
        head_two = await register(first, owner.token, "Race Head Two")
        targets = [await register(first, owner.token, f"Race Target {n}") for n in range(8)]

        async def link(client: GraphQLClient, head_id: str, target: Any) -> dict[str, Any]:
            variables = {"input": {"headAccountId": head_id, "kind": "BILLING",
                                   **by_enrollment(target.number, target.enrollment_token)}}
            return await client.execute(LINK, variables, token=owner.token)

        results = await asyncio.gather(*(
            link(client, head, target)
            for target in targets
            for client, head in ((first, owner.account.id), (second, head_two.id))
        ))
        assert all("errors" not in result for result in results), results
        outcomes = [
            [e["code"] for e in result["data"]["linkAccount"]["userErrors"]] for result in results
        ]
        # For every target exactly one of the two heads won; the other was told ALREADY_LINKED
        # (or, when the other head had just linked the first, that the head is itself taken).
        for pair in zip(outcomes[0::2], outcomes[1::2]):
            assert sorted(len(codes) for codes in pair) == [0, 1], pair
            assert set(sum(pair, [])) <= {"ALREADY_LINKED"}, pair

        groups = {
            result["data"]["linkAccount"]["linkGroup"]["id"]
            for result in results if result["data"]["linkAccount"]["linkGroup"]
        }
        group_id = next(iter(groups))
        unlinks = [
            client.execute(UNLINK, {"input": {"linkGroupId": group_id, "accountId": target.id}},
                           token=owner.token)
            for target in targets for client in (first, second)
        ]
        relinks = [link(second, owner.account.id, target) for target in targets]
        for result in await asyncio.gather(*unlinks, *relinks):
            # Once the last member is out the group is dissolved: later unlinks of it are
            # NOT_FOUND, and relinks start a new group. Nothing else may go wrong.
            codes = [error["extensions"]["code"] for error in result.get("errors", [])]
            assert codes in ([], ["NOT_FOUND"]), result

        per_kind = select(LinkMember.kind, LinkMember.account_id, func.count()).group_by(
            LinkMember.kind, LinkMember.account_id).having(func.count() > 1)
        heads = select(LinkMember.group_id, func.count()).where(LinkMember.is_head).group_by(
            LinkMember.group_id).having(func.count() > 1)
        async with engine.connect() as connection:
            assert (await connection.execute(per_kind)).all() == []
            assert (await connection.execute(heads)).all() == []
    finally:
        for http in https:
            await http.aclose()


async def test_login_throttle_counts_across_processes(two_servers: list[str], engine: AsyncEngine) -> None:
    https = await _clients(two_servers, source="127.0.0.77")
    elsewhere = await _clients(two_servers, source="127.0.0.78")
    try:
        clients = [GraphQLClient(http, engine) for http in https]
        owner = await new_customer(clients[0], "Throttle Across")
        # Five failures, alternating processes: the shared (email, client) counter reaches
        # the limit, so both processes refuse that pair, even the right password.
        for attempt in range(5):
            wrong = await clients[attempt % 2].execute(
                LOGIN, {"input": {"email": owner.email, "password": "not-the-password"}})
            assert wrong["data"]["login"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
        for client in clients:
            blocked = await client.execute(LOGIN, {"input": {"email": owner.email, "password": PASSWORD}})
            assert blocked["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        # The owner, from another address, signs in through either process: the guessing
        # locked out the guesser, not the login.
        for http in elsewhere:
            ok = await GraphQLClient(http, engine).execute(
                LOGIN, {"input": {"email": owner.email, "password": PASSWORD}})
            assert ok["data"]["login"]["token"], ok
        # And the guessing client may still sign in to other logins (no client-wide block
        # at five failures: that takes LINKGATE_LOGIN_CLIENT_MAX_FAILURES).
        other = await clients[1].execute(
            LOGIN, {"input": {"email": unique_email(), "password": "whatever-else"}})
        assert other["data"]["login"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
    finally:
        for http in [*https, *elsewhere]:
            await http.aclose()


REFRESH = """
mutation($input: RefreshSessionInput!) { refreshSession(input: $input) { token refreshToken userErrors { code } } }
"""
SESSION_LOGIN = "mutation($input: LoginInput!) { login(input: $input) { token refreshToken } }"


async def test_sessions_hold_across_processes(two_servers: list[str], engine: AsyncEngine) -> None:
    """A refresh token raced through two processes is spent once and ends its session; a
    logout through one process ends the session in the other at once."""
    https = await _clients(two_servers, source="127.0.0.79")
    try:
        first, second = (GraphQLClient(http, engine) for http in https)
        owner = await new_customer(first, "Sessions Across")
        for _ in range(5):
            session = (await first.execute(
                SESSION_LOGIN, {"input": {"email": owner.email, "password": PASSWORD}}))["data"]["login"]
            results = await asyncio.gather(*(
                client.execute(REFRESH, {"input": {"refreshToken": session["refreshToken"]}})
                for client in (first, second)
            ))
            payloads = [result["data"]["refreshSession"] for result in results]
            winners = [payload for payload in payloads if payload["token"]]
            assert len(winners) <= 1, payloads
            assert [payload["userErrors"] for payload in payloads if not payload["token"]] == \
                [[{"code": "INVALID_TOKEN"}]] * (2 - len(winners))
            for winner in winners:  # the session is gone on both processes
                for client in (first, second):
                    response = await client.post("{ viewer { user { email } } }", token=winner["token"])
                    assert response.status_code == 401

        session = (await first.execute(
            SESSION_LOGIN, {"input": {"email": owner.email, "password": PASSWORD}}))["data"]["login"]
        assert (await second.post("{ viewer { user { email } } }", token=session["token"])).status_code == 200
        await first.execute("mutation { logout { ok } }", token=session["token"])
        assert (await second.post("{ viewer { user { email } } }", token=session["token"])).status_code == 401
    finally:
        for http in https:
            await http.aclose()


async def test_a_right_changed_through_one_process_is_honoured_by_the_other_at_once(
    two_servers: list[str], engine: AsyncEngine
) -> None:
    """Each process caches what a user may do (auth/access_cache.py). Rights taken away
    through the first process, or a link that carried them undone, are never honoured by the
    second once the mutation has answered; given back, they are honoured at once too."""
    https = await _clients(two_servers, source="127.0.0.81")
    try:
        first, second = (GraphQLClient(http, engine) for http in https)
        owner = await new_customer(first, "Rights Across")
        sub = await new_sub_account(first, owner.token, owner.account.id, ["CREDITS_READ"])
        balance = "query($n: String!) { viewer { account(number: $n) { creditBalance } } }"

        async def sub_sees_balance() -> bool:
            result = await second.execute(balance, {"n": owner.account.number}, token=sub.token)
            account = result["data"]["viewer"]["account"]
            return account is not None and account["creditBalance"] is not None

        for round_ in range(6):
            holds = round_ % 2 == 0  # CREDITS_READ in even rounds, taken away in them
            assert await sub_sees_balance() == holds  # and now cached on the second
            assert await sub_sees_balance() == holds
            changed = await set_permissions(first, owner.token, owner.account.id, sub.user_id,
                                            ["INVOICES_READ"] if round_ % 2 == 0 else ["CREDITS_READ"])
            assert changed["data"]["setSubAccountPermissions"]["userErrors"] == [], changed
            assert await sub_sees_balance() == (not holds), round_

        # Rights that flow through a link: the sub-account's CREDITS_READ on the head reaches a
        # BILLING member, until the member is unlinked through the other process.
        member = await register(first, owner.token, "Rights Across Member")
        linked = await first.execute(LINK, {"input": {
            "headAccountId": owner.account.id, "kind": "BILLING",
            **by_enrollment(member.number, member.enrollment_token)}}, token=owner.token)
        assert linked["data"]["linkAccount"]["userErrors"] == [], linked
        seen = await second.execute(balance, {"n": member.number}, token=sub.token)
        assert seen["data"]["viewer"]["account"]["creditBalance"] is not None, seen
        group_id = linked["data"]["linkAccount"]["linkGroup"]["id"]
        unlinked = await first.execute(UNLINK, {"input": {"linkGroupId": group_id, "accountId": member.id}},
                                       token=owner.token)
        assert unlinked["data"]["unlinkAccount"]["userErrors"] == [], unlinked
        gone = await second.execute(balance, {"n": member.number}, token=sub.token)
        assert gone["data"]["viewer"]["account"] is None, gone
    finally:
        for http in https:
            await http.aclose()
