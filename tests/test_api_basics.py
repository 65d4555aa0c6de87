"""The read API over HTTP: viewer, accounts, pagination, nodes, and bad input."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import GraphQLClient

ACCOUNTS = """
query($first: Int, $after: String, $search: String) {
  viewer { accounts(first: $first, after: $after, search: $search) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id number name status } }
  } }
}
"""


def codes(result: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in result.get("errors", [])]


async def test_anonymous_viewer_is_null(gql: GraphQLClient) -> None:
    result = await gql.execute("{ viewer { user { email } } }")
    assert result == {"data": {"viewer": None}}


async def test_owner_sees_own_accounts_with_seeded_data(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    result = await gql.execute(ACCOUNTS, token=tokens["olivia"])
    connection = result["data"]["viewer"]["accounts"]
    numbers = [edge["node"]["number"] for edge in connection["edges"]]
    assert connection["totalCount"] == 4
    assert set(numbers) == {"ACC-100001", "ACC-100002", "ACC-100003", "ACC-100004"}
    names = [edge["node"]["name"] for edge in connection["edges"]]
    assert names == sorted(names)


async def test_keyset_pages_walk_the_whole_list_once(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    seen: list[str] = []
    after = None
    while True:
        result = await gql.execute(ACCOUNTS, {"first": 1, "after": after}, token=tokens["olivia"])
        connection = result["data"]["viewer"]["accounts"]
        seen += [edge["node"]["number"] for edge in connection["edges"]]
        assert connection["totalCount"] == 4
        assert connection["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert len(seen) == 4 and len(set(seen)) == 4


async def test_search_matches_name_and_number(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    by_name = await gql.execute(ACCOUNTS, {"search": "retail"}, token=tokens["olivia"])
    by_number = await gql.execute(ACCOUNTS, {"search": "acc-100004"}, token=tokens["olivia"])
    wildcard = await gql.execute(ACCOUNTS, {"search": "%"}, token=tokens["olivia"])
    assert [e["node"]["name"] for e in by_name["data"]["viewer"]["accounts"]["edges"]] == ["Northwind Retail"]
    assert [e["node"]["number"] for e in by_number["data"]["viewer"]["accounts"]["edges"]] == ["ACC-100004"]
    assert wildcard["data"]["viewer"]["accounts"]["edges"] == []


@pytest.mark.parametrize("first", [0, -1, 101])
async def test_first_out_of_range_is_bad_input(gql: GraphQLClient, tokens: dict[str, str], first: int) -> None:
    result = await gql.execute(ACCOUNTS, {"first": first}, token=tokens["olivia"])
    assert codes(result) == ["BAD_USER_INPUT"]
    assert result["data"] is None or result["data"]["viewer"] is None


@pytest.mark.parametrize("cursor", ["not-a-cursor", "W10", "WzEsICJ4Il0", "eyJhIjogMX0", "!!!"])
async def test_malformed_cursor_is_bad_input(gql: GraphQLClient, tokens: dict[str, str], cursor: str) -> None:
    result = await gql.execute(ACCOUNTS, {"after": cursor}, token=tokens["olivia"])
    assert codes(result) == ["BAD_USER_INPUT"]


async def test_account_by_number(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    query = "query($n: String!) { viewer { account(number: $n) { name viewerIsOwner } } }"
    own = await gql.execute(query, {"n": "ACC-100001"}, token=tokens["olivia"])
    other = await gql.execute(query, {"n": "ACC-200001"}, token=tokens["olivia"])
    missing = await gql.execute(query, {"n": "ACC-999999"}, token=tokens["olivia"])
    assert own["data"]["viewer"]["account"] == {"name": "Northwind Head Office", "viewerIsOwner": True}
    assert other["data"]["viewer"]["account"] is None
    assert missing["data"]["viewer"]["account"] is None


async def test_node_round_trips_a_global_id(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    listing = await gql.execute(ACCOUNTS, {"first": 1}, token=tokens["olivia"])
    node = listing["data"]["viewer"]["accounts"]["edges"][0]["node"]
    result = await gql.execute(
        "query($id: ID!) { node(id: $id) { id ... on Account { number } } }",
        {"id": node["id"]}, token=tokens["olivia"],
    )
    assert result["data"]["node"] == {"id": node["id"], "number": node["number"]}


@pytest.mark.parametrize(
    ("global_id", "code"),
    [
        ("garbage", "BAD_USER_INPUT"),
        ("QWNjb3VudDp4", "BAD_USER_INPUT"),  # "Account:x"
        ("QWNjb3VudDo5OTk5OTk", "NOT_FOUND"),  # "Account:999999"
        ("V2lkZ2V0OjE", "NOT_FOUND"),  # "Widget:1"
    ],
)
async def test_bad_and_unknown_ids(gql: GraphQLClient, tokens: dict[str, str], global_id: str, code: str) -> None:
    result = await gql.execute(
        "query($id: ID!) { node(id: $id) { id } }", {"id": global_id}, token=tokens["olivia"]
    )
    assert result["data"]["node"] is None
    assert codes(result) == [code]


async def test_non_json_body_is_a_graphql_error_not_a_500(gql: GraphQLClient) -> None:
    response = await gql.http.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_unknown_operation_name(gql: GraphQLClient) -> None:
    response = await gql.post("query A { viewer { user { name } } }", operation_name="B")
    assert response.status_code in (200, 400)
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Traceback" not in response.text


async def test_syntax_error_has_a_code(gql: GraphQLClient) -> None:
    result = await gql.execute("{ viewer { ")
    assert codes(result) == ["BAD_USER_INPUT"]


async def test_mutation_over_get_is_refused(gql: GraphQLClient) -> None:
    response = await gql.http.get(
        "/graphql", params={"query": 'mutation { login(input: {email: "a@b.c", password: "x"}) { token } }'}
    )
    assert response.status_code in (400, 405)
    assert response.json()["errors"][0]["extensions"]["code"]


async def test_query_over_get_runs(gql: GraphQLClient) -> None:
    response = await gql.http.get("/graphql", params={"query": "{ viewer { user { name } } }"})
    assert response.status_code == 200
    assert response.json() == {"data": {"viewer": None}}


async def test_graphiql_is_served_to_browsers(gql: GraphQLClient) -> None:
    response = await gql.http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_health_and_readiness(gql: GraphQLClient) -> None:
    assert (await gql.http.get("/healthz")).json() == {"status": "ok"}
    assert (await gql.http.get("/readyz")).json() == {"status": "ok"}


async def test_oversized_body_is_refused(gql: GraphQLClient) -> None:
    response = await gql.http.post(
        "/graphql", content=b"{" + b" " * 200_000 + b"}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_every_response_carries_a_request_id(gql: GraphQLClient) -> None:
    response = await gql.post("{ viewer { user { name } } }")
    assert len(response.headers["x-request-id"]) == 32
