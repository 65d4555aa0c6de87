"""The document limits (schema/document_limits.py): a hostile document is refused before
validation, with the limit it hit named, and no SQL; documents just within each limit, and the
dashboards, still pass. CPU figures are bench/hostile_documents.py's business, not these tests'."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import parse, specified_rules
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, queries

from bench.dataset import DASHBOARD as BENCH_DASHBOARD
from linkgate.settings import Settings
from schema import build_schema, print_schema_sdl
from schema.document_limits import (
    TOO_MANY_TOKENS, TYPE_STEPS, Shape, _Unreadable, count_selections, lex, merge_comparisons,
    shape_of_document, shape_of_tokens,
)
from tests.conftest import GraphQLClient
from tests.test_dashboard_statements import DASHBOARD as STATEMENTS_DASHBOARD

DEFAULTS = Settings(secret_key="x" * 32)
PER_SET = DEFAULTS.max_selections_per_set
SELECTIONS = DEFAULTS.max_selections
COMPARISONS = DEFAULTS.max_merge_comparisons
TOKENS = DEFAULTS.max_query_tokens

ISSUE = "{ viewer { " + " ".join(["user { id }"] * 1100) + " } }"


def users(count: int) -> str:
    """``{ viewer { user { id } … } }``: valid however many times ``user`` is repeated."""
    return "{ viewer { " + " ".join(["user { id }"] * count) + " } }"


def chain(levels: int) -> str:
    """Each fragment spreads the next one twice: 2^levels copies of the last one."""
    fragments = [f"fragment E{i} on Viewer {{ ...E{i + 1} ...E{i + 1} }}" for i in range(levels)]
    return "{ viewer { ...E0 } } " + " ".join(fragments) + f" fragment E{levels} on Viewer {{ user {{ id }} }}"


def wide(count: int) -> str:
    return "{ viewer { user { " + " ".join(f"f{i}" for i in range(count)) + " } } }"


def list_literal(tokens: int) -> str:
    """A document of exactly ``tokens`` tokens."""
    return "{ nodes(ids: [" + " ".join(["1"] * (tokens - 12)) + "]) { id } }"


def measured(text: str) -> tuple[int, int]:
    shape = shape_of_document(parse(text))
    selections, _cycle = count_selections(shape, 10**9)
    return selections, merge_comparisons(shape, 10**9)


def largest(build: Any, fits: Any) -> int:
    count = 1
    while fits(build(count + 1)):
        count += 1
    return count


async def refused(gql: GraphQLClient, query: str, token: str | None = None) -> dict[str, Any]:
    response = await gql.post(query, token=token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.get("data") is None, body
    return body["errors"][0]


def limit_of(body: dict[str, Any]) -> str | None:
    return next((error["extensions"].get("limit") for error in body.get("errors", [])), None)


# --------------------------------------------------------------------------- over HTTP


async def test_the_issue_document_is_refused_naming_the_limit_before_any_sql(
    gql: GraphQLClient, tokens: dict[str, str], count_statements: Any
) -> None:
    with count_statements() as counter:
        error = await refused(gql, ISSUE, tokens["olivia"])
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT", "limit": "selectionsPerSet", "selections": 1100,
        "maxSelectionsPerSet": PER_SET,
    }
    assert f"holds 1100 selections; the limit is {PER_SET}" in error["message"]
    assert "under `viewer`" in error["message"]
    assert counter.count == 0, counter.statements


@pytest.mark.parametrize(
    ("query", "limit", "maximum"),
    [
        (wide(PER_SET + 1), "selectionsPerSet", "maxSelectionsPerSet"),
        (chain(25), "selections", "maxSelections"),
        (users(23), "mergeComparisons", "maxMergeComparisons"),
        (list_literal(TOKENS + 1), "tokens", "maxTokens"),
    ],
    ids=["selectionsPerSet", "selections", "mergeComparisons", "tokens"],
)
async def test_each_limit_refuses_before_any_sql_and_names_itself(
    gql: GraphQLClient, tokens: dict[str, str], count_statements: Any, query: str, limit: str, maximum: str
) -> None:
    with count_statements() as counter:
        error = await refused(gql, query, tokens["olivia"])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["limit"] == limit
    value = error["extensions"][maximum]
    assert str(value) in error["message"]
    assert counter.count == 0, counter.statements


async def test_selections_per_set_just_under_is_left_to_validation(gql: GraphQLClient) -> None:
    body = (await gql.post(wide(PER_SET))).json()
    assert limit_of(body) is None
    assert body["errors"][0]["message"] == "Cannot query field 'f0' on type 'User'."
    assert limit_of((await gql.post(wide(PER_SET + 1))).json()) == "selectionsPerSet"


async def test_merge_comparisons_just_under_runs_and_just_over_is_refused(
    gql: GraphQLClient, tokens: dict[str, str]
) -> None:
    # 4·k·(k-1): k user fields merge under viewer, k selection sets, k ids.
    assert measured(users(22)) == (1 + 2 * 22, 4 * 22 * 21)
    assert measured(users(22))[1] <= COMPARISONS < measured(users(23))[1]
    result = await gql.execute(users(22), token=tokens["olivia"])
    assert result == {"data": {"viewer": {"user": {"id": result["data"]["viewer"]["user"]["id"]}}}}
    error = await refused(gql, users(23), tokens["olivia"])
    assert error["extensions"]["limit"] == "mergeComparisons"


async def test_merge_comparisons_count_repeats_at_every_level_and_through_fragments(gql: GraphQLClient) -> None:
    """The issue's other shapes: nested repeats multiply, spreads count where they land."""
    nested = "{ " + " ".join(["viewer { " + " ".join(["user { id }"] * 12) + " }"] * 2) + " }"
    assert measured(nested)[1] > COMPARISONS  # 24 `user` fields merge under viewer
    assert limit_of((await gql.post(nested)).json()) == "mergeComparisons"
    spreads = ("{ viewer { " + " ".join(f"...F{i}" for i in range(19)) + " } } "
               + " ".join(f"fragment F{i} on Viewer {{ user {{ id }} }}" for i in range(19)))
    assert limit_of((await gql.post(spreads)).json()) == "mergeComparisons"
    same = "{ viewer { " + " ".join(["...F"] * 50) + " } } fragment F on Viewer { user { id } }"
    assert limit_of((await gql.post(same)).json()) == "mergeComparisons"


async def test_selections_just_under_and_just_over(gql: GraphQLClient) -> None:
    """Operations of three selections each: the limit counts the whole document."""
    def operations(count: int) -> str:
        return " ".join(f"query Q{i} {{ viewer {{ user {{ id }} }} }}" for i in range(count))

    under = largest(operations, lambda text: measured(text)[0] <= SELECTIONS)
    assert measured(operations(under))[0] <= SELECTIONS < measured(operations(under + 1))[0]
    response = await gql.post(operations(under))
    assert limit_of(response.json()) is None
    assert limit_of((await gql.post(operations(under + 1))).json()) == "selections"


async def test_the_exponential_fragment_chain_is_refused_before_validation(gql: GraphQLClient) -> None:
    """2^25 selections once spread: counted with one step per fragment, refused at once (the
    depth limiter and CostLimit would walk every copy)."""
    shape = shape_of_tokens(lex(chain(25), TOKENS))  # type: ignore[arg-type]
    assert count_selections(shape, SELECTIONS) == (SELECTIONS + 1, None)
    # E3 = { user { id } }: 2; E2: 2 spreads + 2 × 2 = 6; E1: 2 + 2 × 6 = 14; E0: 30; the
    # operation: viewer, ...E0 and E0's 30 = 32; with each definition: 32 + 30 + 14 + 6 + 2.
    assert measured(chain(3))[0] == 84
    error = await refused(gql, chain(25))
    assert error["extensions"]["limit"] == "selections"
    assert f"the limit is {SELECTIONS}" in error["message"]


async def test_fragment_cycles_are_refused_before_validation(gql: GraphQLClient, count_statements: Any) -> None:
    """Validation would refuse them too, but only after the depth limiter walked every path
    through them (8 fragments all spreading each other: 0.2 s; 30: forever)."""
    names = [f"C{i}" for i in range(30)]
    every_path = "{ viewer { ...C0 } } " + " ".join(
        f"fragment {name} on Viewer {{ " + " ".join(f"...{other}" for other in names if other != name) + " }"
        for name in names
    )
    with count_statements() as counter:
        error = await refused(gql, every_path)
    assert counter.count == 0, counter.statements
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "limit": "fragmentCycles"}
    assert error["message"] == "Cannot spread fragment 'C0' within itself (C0 -> C1 -> C0)."


async def test_tokens_are_counted_as_the_parser_counts_them(gql: GraphQLClient) -> None:
    """Comments count, as in graphql-core: the limit is the same before and after the parse."""
    at_limit = "{\n" + "# a comment\n" * 10 + list_literal(TOKENS - 10)[1:]
    assert len(lex(at_limit, 10**9)) == TOKENS - 10  # type: ignore[arg-type]
    assert lex(at_limit, TOKENS) != TOO_MANY_TOKENS
    body = (await gql.post(at_limit)).json()
    assert limit_of(body) is None
    assert "tokens" not in body["errors"][0]["message"]
    over = (await gql.post("# one more\n" + at_limit)).json()
    assert over["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "limit": "tokens", "maxTokens": TOKENS}
    assert over["errors"][0]["message"] == (
        f"Syntax Error: Document contains more than {TOKENS} tokens. Parsing aborted."
    )


async def test_a_document_the_text_reader_cannot_follow_is_measured_once_parsed(gql: GraphQLClient) -> None:
    """A type definition is not executable: the text reader leaves it to the parser, and the
    parsed document is measured before validation all the same."""
    text = users(23) + " type Extra { a: Int }"
    with pytest.raises(_Unreadable):
        shape_of_tokens(lex(text, TOKENS))  # type: ignore[arg-type]
    assert limit_of((await gql.post(text)).json()) == "mergeComparisons"


async def test_get_requests_and_batch_items_are_measured_too(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    response = await gql.http.get("/graphql", params={"query": users(23)})
    assert limit_of(response.json()) == "mergeComparisons"
    headers = {"authorization": f"Bearer {tokens['olivia']}"}
    batch = [{"query": "{ viewer { user { name } } }"}, {"query": ISSUE}]
    answers = (await gql.http.post("/graphql", json=batch, headers=headers)).json()
    assert answers[0]["data"]["viewer"]["user"]["name"] == "Olivia Northwind"
    assert limit_of(answers[1]) == "selectionsPerSet"


@pytest.mark.parametrize(
    "query",
    [
        "{ nodes(ids: " + "[" * 2400 + "]" * 2400 + ") { id } }",
        "{ viewer " + "{ user " * 300 + "{ id" + " }" * 302,
        '{ viewer { user { id } } } { a(x: "' + '\\"' * 20_000 + ') }',
        '{ viewer { user { id } } } """' + '\\"""' * 10_000,
    ],
    ids=["nested-lists", "nested-selections", "unterminated-string", "unterminated-block-string"],
)
async def test_deep_nesting_and_broken_strings_are_bad_input_never_a_500(gql: GraphQLClient, query: str) -> None:
    response = await gql.post(query)
    assert response.status_code == 200, response.text
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith("Syntax Error")


@pytest.mark.parametrize(
    ("query", "variables"),
    [(BENCH_DASHBOARD, {"first": 50}), (STATEMENTS_DASHBOARD, {"first": 50})],
    ids=["bench-dashboard", "statements-dashboard"],
)
async def test_the_dashboards_pass(
    gql: GraphQLClient, tokens: dict[str, str], query: str, variables: dict[str, Any]
) -> None:
    result = await gql.execute(query, variables, token=tokens["olivia"])
    assert "errors" not in result, result["errors"]
    selections, comparisons = measured(query)
    assert selections * 2 < SELECTIONS and comparisons * 10 < COMPARISONS


# --------------------------------------------------------------------------- the measures


SDL = print_schema_sdl()


@hypothesis_settings(max_examples=150, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(queries(SDL), mutations(SDL)))
def test_the_text_reader_and_the_parsed_document_agree(query: str) -> None:
    same_shape(query)


@pytest.mark.parametrize(
    "query",
    [
        '"""An operation."""\nquery Q($a: Int = 1 @d(x: {y: [1, 2]}), $b: [String!]! = ["x"]) @dir(a: "}") '
        '{ a: viewer @include(if: $x) { ... on Viewer @skip(if: true) { user { id } } ...F @d } } '
        'fragment F on Viewer @x { user(a: {b: "c)"}, d: [1 2 3]) { id } }',
        '# a comment { { {\n{ a # }}}\n b(x: """ block \\""" }} """) c }\n\n',
        '{ a(x: "\\u00e9 \\" }") { b } } # trailing',
        "query { a { ... { b } ... @x { c } } }",
        "subscription S { a }  mutation M { b(input: {a: {b: {c: [[1]]}}}) { c } }",
        "{ on query fragment mutation } { a: on b: fragment }",
        "fragment on_ on T { x } { ...on_ }",
        "\ufeff{\ufeff a, b,,, c(x: -1.5e10, y: 0, z: true, w: null, v: ENUM, u: $var) }\t\r\n",
    ],
)
def test_the_readers_agree_on_every_construct(query: str) -> None:
    same_shape(query)


def same_shape(query: str) -> None:
    text = shape_of_tokens(lex(query, 10**9))  # type: ignore[arg-type]
    parsed = shape_of_document(parse(query))
    assert (text.definitions, text.widest, text.widest_at) == (parsed.definitions, parsed.widest, parsed.widest_at)


@pytest.mark.parametrize(
    "query",
    [
        users(22),
        "{ viewer { user { " + " ".join(["id"] * 44) + " } } }",
        "{ " + " ".join(["viewer { " + " ".join(["user { id }"] * 5) + " }"] * 4) + " }",
        "{ viewer { " + " ".join(f"...F{i}" for i in range(15)) + " } } "
        + " ".join(f"fragment F{i} on Viewer {{ user {{ id }} }}" for i in range(15)),
        "{ viewer { ...A ...B } } fragment A on Viewer { user { id } ...B } fragment B on Viewer { user { name } }",
        "{ viewer { " + " ".join(["accounts(first: 1, after: \"x\") { totalCount }"] * 20) + " } }",
        "{ node(id: \"x\") { ... on Account { number name } ... on Invoice { number } ... on Ticket { number } } }",
        BENCH_DASHBOARD,
    ],
)
def test_the_estimate_bounds_the_work_of_the_merge_check(query: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """graphql-core meters OverlappingFieldsCanBeMergedRule with a budget; the estimate is an
    upper bound of what it spends."""
    from graphql.validation.rules import overlapping_fields_can_be_merged as rule
    from graphql.validation import validate

    if not hasattr(rule, "spend_complexity_budget"):
        pytest.skip("this graphql-core does not meter the rule")
    spent = [0]
    original = rule.spend_complexity_budget

    def spend(context: Any, cost: int) -> None:
        spent[0] += cost
        original(context, cost)

    monkeypatch.setattr(rule, "spend_complexity_budget", spend)
    validate(build_schema()._schema, parse(query), specified_rules)
    assert spent[0] <= measured(query)[1]


def test_no_output_type_is_wrapped_deeper_than_the_estimate_assumes() -> None:
    """``TYPE_STEPS`` is one unit per list or non-null wrapper plus one: ``[T!]!`` at most."""
    from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLInterfaceType

    def wrappers(graphql_type: Any) -> int:
        depth = 0
        while isinstance(graphql_type, (GraphQLList, GraphQLNonNull)):
            graphql_type, depth = graphql_type.of_type, depth + 1
        return depth

    deepest = max(
        wrappers(field.type)
        for named in build_schema()._schema.type_map.values()
        if isinstance(named, (GraphQLObjectType, GraphQLInterfaceType))
        for field in named.fields.values()
    )
    assert deepest + 1 <= TYPE_STEPS


def test_a_hostile_text_is_read_in_one_pass() -> None:
    """Strings that never end, escapes, trailing blanks: each is one token or a refusal, never a
    retry at every position (the lexer's branches do not backtrack)."""
    assert lex('{ a(x: "' + '\\"' * 20_000, 10**9) is None
    assert lex('"""' + '\\"""' * 20_000, 10**9) is None
    assert lex("{ a }" + " " * 100_000, 10**9) == ["{", "a", "}"]
    assert lex("{ a } ?", 10**9) is None
    assert lex("a " * 40_000, 5000) == TOO_MANY_TOKENS


def test_an_empty_shape_measures_nothing() -> None:
    assert count_selections(Shape([]), 10) == (0, None)
    assert merge_comparisons(Shape([]), 10) == 0


@pytest.mark.parametrize("query", [
    "query { viewer { ...A } }",
    "query { viewer { ... on Viewer { user { ...Missing } } } }",
    "query { viewer { ...A } } fragment A on Viewer { ...B }",
])
async def test_a_spread_of_an_undefined_fragment_is_bad_input_not_a_500(
    gql: GraphQLClient, query: str
) -> None:
    """Strawberry's depth limiter walks spreads before validation and failed on a name it
    could not find (a 500, found by the subscriptions review)."""
    response = await gql.post(query)
    assert response.status_code in (200, 400), response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "Unknown fragment" in error["message"]
