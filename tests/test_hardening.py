"""Limits, production switches and HTTP behaviour (DESIGN §3, the hardening issue)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.app import create_app
from linkgate.settings import Settings
from tests.conftest import TEST_SECRET, GraphQLClient, client_for

DEEP = "{ viewer { accounts(first: 1) { edges { node { " + "linkGroups { head { " * 7 + "name" + " } }" * 7 + " } } } } }"
MANY_ALIASES = "{ " + " ".join(f"a{i}: viewer {{ user {{ name }} }}" for i in range(40)) + " }"
MANY_TOKENS = "{ viewer { user { " + " ".join(["name"] * 6000) + " } } }"
EXPENSIVE = "{ viewer { accounts(first: 100) { edges { node { invoices(first: 100) { edges { node { lines { description amount { amount } } } } } } } } } }"


@pytest.mark.parametrize(
    ("query", "needle"),
    [(DEEP, "depth"), (MANY_ALIASES, "alias"), (MANY_TOKENS, "token"), (EXPENSIVE, "limit")],
)
async def test_limits_refuse_before_any_sql(
    gql: GraphQLClient, tokens: dict[str, str], count_statements: Any, query: str, needle: str
) -> None:
    with count_statements() as counter:
        response = await gql.post(query, token=tokens["olivia"])
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert needle in body["errors"][0]["message"].lower()
    assert body.get("data") is None
    assert counter.count == 0, counter.statements


async def test_the_cost_error_names_the_estimate(gql: GraphQLClient) -> None:
    body = (await gql.post(EXPENSIVE)).json()
    extensions = body["errors"][0]["extensions"]
    assert extensions["limit"] == "cost" and extensions["cost"] > extensions["maxCost"] == 250_000


async def test_a_dashboard_is_within_the_cost_limit(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    query = "{ viewer { accounts(first: 50) { edges { node { invoices(first: 10) { edges { node { lines { amount { amount } } } } } tickets(first: 10) { edges { node { messages { body } } } } } } } } }"
    result = await gql.execute(query, token=tokens["olivia"])
    assert "errors" not in result


async def test_batches_run_up_to_the_limit(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    headers = {"authorization": f"Bearer {tokens['olivia']}"}
    two = [{"query": "{ viewer { user { name } } }"}, {"query": "{ viewer { user { email } } }"}]
    response = await gql.http.post("/graphql", json=two, headers=headers)
    assert response.status_code == 200
    assert [item["data"]["viewer"]["user"] for item in response.json()] == [
        {"name": "Olivia Northwind"}, {"email": "olivia@northwind.example"},
    ]
    eleven = [{"query": "{ viewer { user { name } } }"}] * 11
    refused = await gql.http.post("/graphql", json=eleven, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", '{"query": "mutation { signUp(input: {email: \\"x@y.z\\", password: \\"p\\", name: \\"n\\", accountName: \\"a\\"}) { token } }"}'),
        ("application/x-www-form-urlencoded", "query=mutation%20%7B%20x%20%7D"),
        ("multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\n{ x }\r\n--x--\r\n"),
    ],
)
async def test_browser_simple_requests_are_refused(gql: GraphQLClient, content_type: str, body: str) -> None:
    """What a page on another site can POST without a preflight never reaches GraphQL (CSRF)."""
    response = await gql.http.post("/graphql", content=body, headers={"content-type": content_type})
    assert response.status_code == 415
    assert response.headers["accept-post"] == "application/json"
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_mutation_over_get_is_405_with_allow(gql: GraphQLClient) -> None:
    response = await gql.http.get(
        "/graphql", params={"query": 'mutation { login(input: {email: "a@b.c", password: "x"}) { token } }'}
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_graphql_response_json_is_negotiated(gql: GraphQLClient) -> None:
    accept = {"accept": "application/graphql-response+json, application/json;q=0.9"}
    broken = await gql.http.post("/graphql", json={"query": "{ viewer {"}, headers=accept)
    assert broken.status_code == 400
    assert broken.headers["content-type"].startswith("application/graphql-response+json")
    assert "data" not in broken.json()
    fine = await gql.http.post("/graphql", json={"query": "{ viewer { user { name } } }"}, headers=accept)
    assert fine.status_code == 200 and fine.json() == {"data": {"viewer": None}}
    plain = await gql.http.post("/graphql", json={"query": "{ viewer {"})
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("application/json")


@pytest.fixture
async def production(settings: Settings, engine: AsyncEngine) -> Any:
    locked = settings.model_copy(update={
        "graphiql": False, "introspection": False,
        "cors_origins": ["https://dashboard.example"],
    })
    async with client_for(create_app(locked, engine=engine), "10.50.0.1") as http:
        yield http


async def test_production_switches(production: Any) -> None:
    introspection = (await production.post("/graphql", json={"query": "{ __schema { types { name } } }"})).json()
    assert introspection["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "introspection" in introspection["errors"][0]["message"].lower()
    typo = (await production.post("/graphql", json={"query": "{ viewr { user { name } } }"})).json()
    assert "did you mean" not in typo["errors"][0]["message"].lower()
    page = await production.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 404 and "graphiql" not in page.text.lower()


async def test_suggestions_are_shown_in_development(gql: GraphQLClient) -> None:
    typo = (await gql.post("{ viewr { user { name } } }")).json()
    assert "did you mean" in typo["errors"][0]["message"].lower()


async def test_cors_allows_only_configured_origins(production: Any) -> None:
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type"}
    allowed = await production.options("/graphql", headers={"origin": "https://dashboard.example", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://dashboard.example"
    refused = await production.options("/graphql", headers={"origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in refused.headers


async def test_cors_allows_only_the_headers_configured(settings: Settings, engine: AsyncEngine) -> None:
    """An SPA that sends tracing headers is refused at preflight until they are allowed
    (LINKGATE_CORS_ALLOW_HEADERS, JSON or comma-separated); Authorization and Content-Type
    always are."""
    preflight = {"origin": "https://dashboard.example", "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization, content-type, sentry-trace, baggage"}
    plain = settings.model_copy(update={"cors_origins": ["https://dashboard.example"]})
    async with client_for(create_app(plain, engine=engine), "10.50.0.2") as http:
        refused = await http.options("/graphql", headers=preflight)
    assert refused.status_code == 400 and "sentry-trace" not in refused.headers.get("access-control-allow-headers", "")
    allowing = Settings(database_url=settings.database_url, secret_key=TEST_SECRET,
                             cors_origins=["https://dashboard.example"],
                             cors_allow_headers="Sentry-Trace, baggage")  # type: ignore[arg-type]
    assert allowing.cors_allow_headers == ["sentry-trace", "baggage"]
    async with client_for(create_app(allowing, engine=engine), "10.50.0.3") as http:
        allowed = await http.options("/graphql", headers=preflight)
        sent = await http.post("/graphql", json={"query": "{ __typename }"},
                               headers={"origin": "https://dashboard.example", "sentry-trace": "abc", "baggage": "x=1"})
    assert allowed.status_code == 200, allowed.text
    assert {"sentry-trace", "baggage"} <= {name.strip() for name in allowed.headers["access-control-allow-headers"].split(",")}
    assert sent.status_code == 200 and sent.headers["access-control-allow-origin"] == "https://dashboard.example"


async def test_time_limit_answers_masked_503(settings: Settings, engine: AsyncEngine, tokens: dict[str, str]) -> None:
    hurried = settings.model_copy(update={"request_timeout_seconds": 0.000001})
    async with client_for(create_app(hurried, engine=engine), "10.51.0.1") as http:
        response = await http.post(
            "/graphql", json={"query": "{ viewer { accounts { edges { node { name } } } } }"},
            headers={"authorization": f"Bearer {tokens['olivia']}"},
        )
    assert response.status_code == 503
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": response.headers["x-request-id"]}
    assert "time limit" in error["message"]


async def test_page_size_bounds_are_settings(settings: Settings, engine: AsyncEngine, tokens: dict[str, str]) -> None:
    narrow = settings.model_copy(update={"default_page_size": 2, "max_page_size": 3})
    query = "query($first: Int) { viewer { accounts(first: $first) { edges { node { number } } } } }"
    async with client_for(create_app(narrow, engine=engine), "10.52.0.1") as http:
        client = GraphQLClient(http)
        default = await client.execute(query, token=tokens["olivia"])
        too_many = await client.execute(query, {"first": 4}, token=tokens["olivia"])
    assert len(default["data"]["viewer"]["accounts"]["edges"]) == 2
    assert too_many["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "between 1 and 3" in too_many["errors"][0]["message"]


def test_the_benchmark_dashboard_fits_the_default_cost_limit() -> None:
    """The large dashboard of issue 6 (bench/dataset.py) must pass the limit as configured."""
    from graphql import parse

    from bench.dataset import DASHBOARD
    from schema import build_schema
    from schema.limits import estimate_cost

    cost = estimate_cost(build_schema()._schema, parse(DASHBOARD), None, {"first": 50})
    assert 50_000 < cost <= Settings.model_fields["max_query_cost"].default


SURROGATE = "\ud800"


@pytest.mark.parametrize(
    ("body", "token_needed"),
    [
        # Echoed back in the error message ("got invalid value …").
        ({"query": "query($id: ID!) { node(id: $id) { id } }", "variables": {"id": SURROGATE}}, False),
        ({"query": "mutation($i: RevokeInvitationInput!) { revokeInvitation(input: $i) { userErrors { code } } }",
          "variables": {"i": {"invitationId": SURROGATE}}}, True),
        ({"query": "mutation($i: ActivateSubAccountInput!) { activateSubAccount(input: $i) { userErrors { code } } }",
          "variables": {"i": {"contactId": "x", "permissions": [SURROGATE]}}}, True),
        ({"query": "mutation($i: LoginInput!) { login(input: $i) { token } }",
          "variables": {"i": {"email": "a@b.example", "password": "x", SURROGATE: 1}}}, False),
        ({"query": "{ viewer { user { id } } }", "operationName": SURROGATE}, False),
        ({"query": "{ " + SURROGATE + " }"}, False),
    ],
)
async def test_a_lone_surrogate_anywhere_is_a_clear_error(
    gql: GraphQLClient, tokens: dict[str, str], body: dict[str, Any], token_needed: bool
) -> None:
    import json

    headers = {"content-type": "application/json"}
    if token_needed:
        headers["authorization"] = f"Bearer {tokens['olivia']}"
    response = await gql.http.post("/graphql", content=json.dumps(body), headers=headers)
    assert response.status_code < 500, response.text
    errors = response.json()["errors"]
    assert errors and all(error["extensions"]["code"] == "BAD_USER_INPUT" for error in errors), errors
