"""Bad input at the edge (the robustness issue): every case found from outside, by name.

Each answers a clear ``BAD_USER_INPUT`` naming what was wrong (HTTP 400 when the request
itself is refused), never a 500, on SQLite and PostgreSQL alike. The property test over the
same surface is ``tests/test_input_fuzz.py``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import jwt
import pytest

from linkgate.app import create_app
from linkgate.settings import Settings
from tests.conftest import TEST_SECRET, GraphQLClient, client_for, refused_at_the_edge
from tests.customers import new_customer

NUL = "Nort\x00hwind"

# (operation, variables) for every free-text input the issue found answering a 500 on
# PostgreSQL; ``{account}`` is the writing customer's account id.
NUL_INPUTS: dict[str, tuple[str, dict[str, Any]]] = {
    "renameAccount": (
        "mutation($input: RenameAccountInput!) { renameAccount(input: $input) { userErrors { code } } }",
        {"input": {"accountId": "{account}", "name": NUL}},
    ),
    "addContact name": (
        "mutation($input: AddContactInput!) { addContact(input: $input) { userErrors { code } } }",
        {"input": {"accountId": "{account}", "name": NUL, "email": "nul@example.com"}},
    ),
    "openTicket body": (
        "mutation($input: OpenTicketInput!) { openTicket(input: $input) { userErrors { code } } }",
        {"input": {"accountId": "{account}", "subject": "Help", "body": NUL}},
    ),
    "transferCredits note": (
        "mutation($input: TransferCreditsInput!) { transferCredits(input: $input) { userErrors { code } } }",
        {"input": {"fromAccountId": "{account}", "toAccountId": "{account}", "credits": 1, "note": NUL}},
    ),
    "signUp name": (
        "mutation($input: SignUpInput!) { signUp(input: $input) { ok } }",
        {"input": {"email": "nul@example.com", "password": "long enough pw", "name": NUL,
                   "accountName": "Acme"}},
    ),
    "login email": (
        "mutation($input: LoginInput!) { login(input: $input) { token } }",
        {"input": {"email": "olivia\x00@northwind.example", "password": "x"}},
    ),
    "accounts search": (
        "query($search: String) { viewer { accounts(search: $search) { totalCount } } }",
        {"search": NUL},
    ),
    "account number": ("query($number: String!) { viewer { account(number: $number) { id } } }",
                       {"number": NUL}),
    "invoice filter number": (
        "query($f: InvoiceFilter) { viewer { account(number: \"ACC-100001\") { invoices(filter: $f) { totalCount } } } }",
        {"f": {"number": NUL}},
    ),
}


def _fill(value: Any, account_id: str) -> Any:
    if isinstance(value, dict):
        return {key: _fill(item, account_id) for key, item in value.items()}
    return account_id if value == "{account}" else value


def _refusal(response: Any) -> dict[str, Any]:
    """The one error of a refused request (HTTP 400, no ``data``)."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert "data" not in body and len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    return error


@pytest.mark.parametrize("case", sorted(NUL_INPUTS))
async def test_a_nul_in_any_variable_is_refused_naming_the_field(gql: GraphQLClient, case: str) -> None:
    customer = await new_customer(gql)
    query, variables = NUL_INPUTS[case]
    response = await gql.post(query, _fill(variables, customer.account.id), token=customer.token)
    error = _refusal(response)
    field = error["extensions"]["field"]
    assert field.startswith("variables.") and field.split(".")[-1] in {"name", "body", "note", "email", "search", "number"}
    assert "NUL" in error["message"] and field in error["message"]


async def test_a_nul_written_as_a_graphql_escape_is_refused_naming_the_argument(
    gql: GraphQLClient, tokens: dict[str, str]
) -> None:
    body = (await gql.post('{ viewer { account(number: "NW-\\u0000") { id } } }', token=tokens["olivia"])).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "`number`" in body["errors"][0]["message"] and "NUL" in body["errors"][0]["message"]
    assert body.get("data") is None


async def test_a_nul_in_a_get_parameter_is_refused(gql: GraphQLClient) -> None:
    response = await gql.http.get(
        "/graphql", params={"query": "query($n: String!) { account(number: $n) { id } }",
                            "variables": json.dumps({"n": "a\x00"})},
    )
    assert _refusal(response)["extensions"]["field"] == "variables.n"
    raw = await gql.http.get("/graphql", params={"query": "{ viewer { user { id } } }", "operationName": "a\x00"})
    assert _refusal(raw)["extensions"]["field"] == "operationName"


async def test_a_lone_surrogate_is_refused_naming_the_field(gql: GraphQLClient) -> None:
    customer = await new_customer(gql)
    response = await gql.post(
        "mutation($input: RenameAccountInput!) { renameAccount(input: $input) { userErrors { code } } }",
        {"input": {"accountId": customer.account.id, "name": "Shops \ud800"}}, token=customer.token,
    )
    error = _refusal(response)
    assert error["extensions"]["field"] == "variables.input.name"
    assert "surrogate" in error["message"]


INVOICES_FROM = """query($from: DateTime) { viewer { account(number: "ACC-100001") {
  invoices(filter: {issuedFrom: $from}) { totalCount } } } }"""


@pytest.mark.parametrize(
    ("value", "reason"),
    [("2026-10-01T00:00:00", "time zone"), ("0001-01-01T00:00:00+01:00", "outside"),
     ("2026-13-01T00:00:00Z", "DateTime"), ("yesterday", "DateTime")],
)
async def test_a_date_time_must_name_its_zone_and_exist(
    gql: GraphQLClient, tokens: dict[str, str], value: str, reason: str
) -> None:
    body = (await gql.post(INVOICES_FROM, {"from": value}, token=tokens["olivia"])).json()
    assert body.get("data") is None, body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$from" in body["errors"][0]["message"] and reason in body["errors"][0]["message"]
    literal = INVOICES_FROM.replace("$from", json.dumps(value)).replace("query($from: DateTime) ", "")
    body = (await gql.post(literal, token=tokens["olivia"])).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


async def test_a_date_time_with_its_zone_filters_in_utc(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    utc = await gql.execute(INVOICES_FROM, {"from": "2026-10-01T00:00:00Z"}, token=tokens["olivia"])
    shifted = await gql.execute(INVOICES_FROM, {"from": "2026-10-01T02:00:00+02:00"}, token=tokens["olivia"])
    assert utc == shifted and "errors" not in utc
    everything = await gql.execute(INVOICES_FROM, {"from": "0002-01-01T00:00:00+01:00"}, token=tokens["olivia"])
    assert everything["data"]["viewer"]["account"]["invoices"]["totalCount"] >= 1


@pytest.mark.parametrize(
    ("body", "field"),
    [(b"null", None), (b"42", None), (b'"str"', None), (b"true", None),
     (b'[1, "x", null]', "[0]"), (b'[{"query": "{ viewer { user { id } } }"}, 7]', "[1]"),
     (b'{"query": 42}', "query"), (b'{"query": "{ a }", "variables": [1]}', "variables"),
     (b'{"query": "{ a }", "operationName": {"a": 1}}', "operationName"),
     (b'{"query": "{ a }", "extensions": "x"}', "extensions"),
     (b'[{"query": "{ a }", "variables": "x"}]', "[0].variables")],
)
async def test_a_body_that_is_no_operation_is_refused(gql: GraphQLClient, body: bytes, field: str | None) -> None:
    response = await gql.http.post("/graphql", content=body, headers={"content-type": "application/json"})
    error = _refusal(response)
    assert error["extensions"].get("field") == field


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{}", b'{"query": "{ viewer { user { id } } }", "x": "\xc3\x28"}',
     b'{"query": "{ a }", "variables": {"v": ' + b"[" * 20_000 + b"]" * 20_000 + b"}}",
     b'{"query": "{ a }", "variables": {"v": NaN}}', b'{"query": "{ a }",', b""],
)
async def test_bytes_that_are_not_json_are_refused(gql: GraphQLClient, body: bytes) -> None:
    error = _refusal(await gql.http.post("/graphql", content=body, headers={"content-type": "application/json"}))
    assert "not valid JSON" in error["message"]


async def test_json_nested_within_the_limit_is_answered_by_graphql(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    deep = {"n": json.loads("[" * 400 + "]" * 400)}
    response = await gql.post("query($n: String) { account(number: $n) { id } }", deep, token=tokens["olivia"])
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "claims",
    [{"sub": str(2**63)}, {"sub": "-1"}, {"sub": "1e3"}, {"sid": 2**70}, {"ver": 2**40}, {"ver": "x"}],
)
async def test_a_validly_signed_token_with_claims_out_of_range_is_unauthenticated(
    gql: GraphQLClient, claims: dict[str, Any]
) -> None:
    now = datetime.now(timezone.utc)
    token = jwt.encode(
        {"sub": "1", "ver": 1, "sid": 1, "iss": "linkgate", "iat": now,
         "exp": now + timedelta(minutes=5), **claims},
        TEST_SECRET, algorithm="HS256",
    )
    response = await gql.post("{ viewer { user { id } } }", token=token)
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_two_anonymous_operations_are_refused_not_run(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    body = (await gql.post("{ viewer { user { id } } } { viewer { user { name } } }", token=tokens["olivia"])).json()
    assert body.get("data") is None, body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "anonymous" in body["errors"][0]["message"].lower()


async def test_two_named_operations_need_an_operation_name(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    document = "query A { viewer { user { id } } } query B { viewer { user { name } } }"
    body = (await gql.post(document, token=tokens["olivia"])).json()
    assert body.get("data") is None and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    chosen = (await gql.post(document, token=tokens["olivia"], operation_name="B")).json()
    assert chosen["data"]["viewer"]["user"] == {"name": "Olivia Northwind"}


@pytest.mark.parametrize(
    "query",
    [
        "{ viewer { accounts(frist: 1) { totalCount } } }",  # an argument
        "query($x: Accont) { viewer { user { id } } }",  # a type
        '{ node(id: "x") { ... on Acount { id } } }',  # a type condition
        '{ viewer { account(number: "ACC-100001") { invoices(filter: {status: PAIDD}) { totalCount } } } }',  # an enum value
        "{ viewer { usr { id } } }",  # a field
    ],
)
async def test_no_suggestions_when_introspection_is_off(settings: Settings, engine: Any, query: str) -> None:
    app = create_app(settings.model_copy(update={"introspection": False}), engine)
    async with client_for(app) as http:
        response = await http.post("/graphql", json={"query": query, "operationName": None})
    messages = [error["message"] for error in response.json()["errors"]]
    assert messages and not any("Did you mean" in message for message in messages), messages
    # With introspection on, the same mistakes are worth a hint.
    if "usr" in query:
        async with client_for(create_app(settings, engine)) as http:
            hinted = (await http.post("/graphql", json={"query": query})).json()
        assert "Did you mean" in hinted["errors"][0]["message"]


async def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(gql: GraphQLClient) -> None:
    """No Content-Length to check first: the body is counted as it arrives."""
    async def chunks() -> Any:
        yield b'{"query": "{ viewer { user { id } } }", "x": "'
        for _ in range(1000):
            yield b"x" * 1000
        yield b'"}'

    response = await gql.http.post("/graphql", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    small = await gql.http.post("/graphql", content=_once(b'{"query": "{ __typename }"}'),
                                headers={"content-type": "application/json"})
    assert small.json() == {"data": {"__typename": "Query"}}


async def _once(data: bytes) -> Any:
    yield data


@pytest.mark.parametrize("number", ["x" * 50_001, "%" * 25_000, "INV-" + "_" * 40])
async def test_an_invoice_number_filter_longer_than_any_number_finds_nothing(
    gql: GraphQLClient, tokens: dict[str, str], number: str
) -> None:
    """SQLite refuses a LIKE pattern over 50,000 bytes (escaping doubles each % and _)."""
    query = ("query($f: InvoiceFilter) { viewer { account(number: \"ACC-100001\") {"
             " invoices(filter: $f) { totalCount } } } }")
    result = await gql.execute(query, {"f": {"number": number}}, token=tokens["olivia"])
    assert result == {"data": {"viewer": {"account": {"invoices": {"totalCount": 0}}}}}


@pytest.mark.parametrize(
    "alias",
    ["QWNjb3VudDox!!!", "**QWNjb3VudDox**", "QWNj b3Vu dDox", "QWNjb3VudDox=",
     "QWNjb3VudDowMQ",  # Account:01
     "QWNjb3VudDrZodmi"],  # Account:١٢ (Arabic-Indic digits)
)
async def test_an_object_has_one_id_not_aliases(gql: GraphQLClient, tokens: dict[str, str], alias: str) -> None:
    body = (await gql.post("query($id: ID!) { node(id: $id) { id } }", {"id": alias}, token=tokens["olivia"])).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert (body.get("data") or {}).get("node") is None


async def test_a_ticket_subject_is_one_line_of_text(gql: GraphQLClient) -> None:
    customer = await new_customer(gql)
    opened = await gql.execute(
        "mutation($input: OpenTicketInput!) { openTicket(input: $input) { ticket { id } userErrors { field code } } }",
        {"input": {"accountId": customer.account.id, "subject": "Help\x1b[2J", "body": "It broke.\n\tTwice."}},
        token=customer.token,
    )
    assert opened["data"]["openTicket"] == {"ticket": None, "userErrors": [{"field": ["subject"], "code": "SUBJECT_INVALID"}]}


def _cursor(values: list[Any]) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "values"),
    [
        ("{ viewer { accounts(first: 2, after: $c) { totalCount } } }", ["a", 2**63]),
        ("{ viewer { accounts(first: 2, after: $c) { totalCount } } }", ["a", -(2**63) - 1]),
        ("{ viewer { accounts(first: 2, after: $c) { totalCount } } }", ["\ud800", 1]),
        ("{ viewer { accounts(first: 2, after: $c) { totalCount } } }", ["\u0000", 1]),
        ('{ viewer { account(number: "ACC-100001") { tickets(first: 2, after: $c) { totalCount } } } }', [2**64]),
        ('{ viewer { account(number: "ACC-100001") { creditLedger(first: 2, after: $c) { totalCount } } } }', [10**30]),
        ('{ viewer { account(number: "ACC-100001") { invoices(first: 2, after: $c) { totalCount } } } }',
         ["0001-01-01T00:00:00+14:00", 1]),
        ('{ viewer { account(number: "ACC-100001") { invoices(first: 2, after: $c) { totalCount } } } }',
         ["2026-01-01T00:00:00", 1]),
        ('{ viewer { account(number: "ACC-100001") { invoices(first: 2, after: $c) { totalCount } } } }',
         ["2026-01-01T00:00:00+00:00", 2**63]),
    ],
)
async def test_a_forged_cursor_is_bad_input(
    gql: GraphQLClient, tokens: dict[str, str], query: str, values: list[Any]
) -> None:
    """Cursors are base64 JSON: their contents never pass the edge, so they are checked where
    they are read, against what the database can compare."""
    document = "query($c: String) " + query
    body = (await gql.post(document, {"c": _cursor(values)}, token=tokens["olivia"])).json()
    codes = [error["extensions"]["code"] for error in body["errors"]]
    assert codes == ["BAD_USER_INPUT"], body
    deep = _cursor(json.loads("[" * 200 + "]" * 200))
    body = (await gql.post(document, {"c": deep}, token=tokens["olivia"])).json()
    assert [error["extensions"]["code"] for error in body["errors"]] == ["BAD_USER_INPUT"], body


async def test_a_list_in_variables_is_bounded_before_graphql_coerces_it(gql: GraphQLClient) -> None:
    response = await gql.post("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": [1] * 30_000})
    error = refused_at_the_edge(response, "variables.ids")
    assert error["extensions"]["limit"] == "listItems"
    nested = await gql.post("query($v: String) { __typename }", {"v": [[1] * 1_001]})
    assert refused_at_the_edge(nested, "variables.v[0]")["extensions"]["limit"] == "listItems"


async def test_an_empty_batch_is_refused(gql: GraphQLClient) -> None:
    response = await gql.http.post("/graphql", content=b"[]", headers={"content-type": "application/json"})
    assert "empty" in refused_at_the_edge(response)["message"]


async def test_a_surrogate_in_a_get_variable_is_named_with_its_path(gql: GraphQLClient) -> None:
    response = await gql.http.get("/graphql", params={
        "query": "query($a: String) { __typename }", "variables": '{"a": "\\ud800"}'})
    refused_at_the_edge(response, "variables.a")


@pytest.mark.parametrize("name", ["Shops\u202egnp.exe", "\ufeffShops", "Sh\u2066ops"])
async def test_names_that_read_differently_from_what_they_hold_are_refused(gql: GraphQLClient, name: str) -> None:
    customer = await new_customer(gql)
    renamed = await gql.execute(
        "mutation($input: RenameAccountInput!) { renameAccount(input: $input) { userErrors { field code } } }",
        {"input": {"accountId": customer.account.id, "name": name}}, token=customer.token,
    )
    assert renamed["data"]["renameAccount"]["userErrors"] == [{"field": ["name"], "code": "NAME_INVALID"}]
    family = await gql.execute(
        "mutation($input: RenameAccountInput!) { renameAccount(input: $input) { account { name } userErrors { code } } }",
        {"input": {"accountId": customer.account.id, "name": "Familie \U0001F468\u200d\U0001F469\u200d\U0001F467"}},
        token=customer.token,
    )
    assert family["data"]["renameAccount"]["userErrors"] == []  # zero-width joiners in an emoji stay


def test_periods_and_ticket_numbers_take_ascii_digits_only() -> None:
    from datetime import date

    from resolvers.invoicing import parse_period
    from resolvers.ticket_mutations import _NUMBER
    from resolvers.user_errors import UserError

    assert isinstance(parse_period("２０２６-０１", today=date(2026, 12, 6)), UserError)
    assert not isinstance(parse_period("2026-01", today=date(2026, 12, 6)), UserError)
    assert _NUMBER.match("TKT-١٠٠٠٠١") is None and _NUMBER.match("TKT-100001")


async def test_a_batch_shares_one_token_budget(gql: GraphQLClient, settings: Settings) -> None:
    """Ten operations cost what one may: a batch of ten documents just under the token limit
    each is refused before any is parsed."""
    half = settings.max_query_tokens // 2
    document = "{ nodes(ids: [" + "1 " * (half - 10) + "]) { id } }"
    batch = [{"query": f"# {index}\n" + document} for index in range(3)]
    response = await gql.http.post("/graphql", json=batch)
    assert refused_at_the_edge(response)["extensions"]["limit"] == "tokens"
    mutation_late = [{"query": "{ __typename }"},
                     {"query": 'query mutation { __typename } mutation M { logout { ok } }'}]
    refused = await gql.http.post("/graphql", json=mutation_late)
    assert refused.status_code == 400 and "mutations" in refused.json()["errors"][0]["message"]
    fine = await gql.http.post("/graphql", json=[{"query": "{ __typename }"},
                                                 {"query": "query mutation { __typename }"}])
    assert fine.json() == [{"data": {"__typename": "Query"}}, {"data": {"__typename": "Query"}}]


async def test_several_operations_are_refused_before_validation(
    gql: GraphQLClient, count_statements: Any
) -> None:
    document = " ".join(f"query Q{index} {{ __typename }}" for index in range(300))
    body = (await gql.post(document)).json()
    assert body["errors"][0]["extensions"]["field"] == "operationName"
