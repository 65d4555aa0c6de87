"""Operation limits: the cost estimate, and every limit refusing a request before any SQL."""

from __future__ import annotations

from typing import Any

from graphql import parse

from schema import build_schema
from schema.limits import ASSUMED_LIST_SIZE, DEFAULT_PAGE_SIZE, estimate_cost


SCHEMA = build_schema()._schema


def cost(query: str, variables: dict[str, Any] | None = None, operation: str | None = None) -> int:
    return estimate_cost(SCHEMA, parse(query), operation, variables)


def test_each_field_costs_one() -> None:
    assert cost("{ viewer { user { name email } } }") == 4


def test_connections_multiply_by_first_and_edges_do_not_count_twice() -> None:
    small = cost("{ viewer { accounts(first: 2) { edges { node { name } } } } }")
    large = cost("{ viewer { accounts(first: 20) { edges { node { name } } } } }")
    assert small == 1 + 1 + 2 * (1 + 1 * (1 + 1))
    assert large - 2 == 10 * (small - 2)


def test_variables_and_defaults_drive_first() -> None:
    query = "query($n: Int) { viewer { accounts(first: $n) { edges { node { name } } } } }"
    assert cost(query, {"n": 5}) == cost("{ viewer { accounts(first: 5) { edges { node { name } } } } }")
    assert cost(query, {}) == 2 + DEFAULT_PAGE_SIZE * 3


def test_plain_lists_assume_a_size_and_nodes_count_their_ids() -> None:
    assert cost("{ viewer { account(number: \"x\") { services { name } } } }") == 3 + ASSUMED_LIST_SIZE
    assert cost('{ nodes(ids: ["a", "b", "c"]) { id } }') == 1 + 3 * 1


def test_fragments_count_where_spread_and_cycles_do_not_hang() -> None:
    inline = cost("{ viewer { accounts(first: 3) { edges { node { name number } } } } }")
    spread = cost(
        "query { viewer { accounts(first: 3) { edges { node { ...A } } } } } "
        "fragment A on Account { name number }"
    )
    assert inline == spread
    cyclic = "query { viewer { ...V } } fragment V on Viewer { user { name } ...V }"
    assert cost(cyclic) > 0


def test_nesting_multiplies() -> None:
    nested = cost(
        "{ viewer { accounts(first: 10) { edges { node { invoices(first: 10) { edges { node { number } } } } } } } }"
    )
    assert nested > 10 * 10


def test_the_cost_estimate_walks_each_fragment_once() -> None:
    """A chain of fragments each spreading the next twice: 2^16 selections if expanded, but
    the estimate walks each fragment once (and still counts every spread)."""
    from graphql import parse

    from schema import build_schema
    from schema.limits import _CostWalker, estimate_cost

    depth = 16  # unmemoised, 65,536 walks: the test fails fast rather than hanging
    fragments = [f"fragment F{i} on User {{ ...F{i + 1} ...F{i + 1} }}" for i in range(depth)]
    document = parse("{ viewer { user { ...F0 } } } " + " ".join(fragments) + f" fragment F{depth} on User {{ id }}")
    schema = build_schema()._schema
    calls = 0
    real = _CostWalker.field

    def counting(self: Any, *args: Any) -> int:
        nonlocal calls
        calls += 1
        return real(self, *args)

    _CostWalker.field = counting  # type: ignore[method-assign]
    try:
        cost = estimate_cost(schema, document)
    finally:
        _CostWalker.field = real  # type: ignore[method-assign]
    assert cost == 2 + 2**depth  # viewer, user, then every id the chain would select
    assert calls < 10
