"""The planned executor (schema/execution.py) answers exactly as graphql-core's does.

Differential tests: the same query over the same objects through ``LinkgateExecutor`` and
through Strawberry's stock executor must give the same data and the same errors (message and
path), for well-formed objects and for broken ones (a null in a non-null field, a value the
scalar refuses, a resolver that raises, sync or async) — so the short paths never change an
answer or an error. Then the same comparison over HTTP on the demo data, for each persona.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

import pytest
import strawberry
from hypothesis import HealthCheck, given, settings, strategies as st
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from schema.execution import LinkgateExecutor
from tests.conftest import GraphQLClient, client_for

BROKEN = object()  # stands for "a value of the wrong type" in generated trees


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Money:
    amount: int
    currency: str


@strawberry.interface
class Named:
    """Gives ``Item`` Strawberry's own ``is_type_of``, which the planned executor calls without
    an ``Info``."""

    name: str


@strawberry.type
class Item(Named):
    name: str
    note: str | None
    count: int
    colour: Colour
    price: Money
    maybe_price: Money | None
    children: list[Item]
    loose_children: list[Item | None] | None
    colours: list[Colour] = strawberry.field(default_factory=list)

    @strawberry.field
    def shout(self) -> str:
        if self.note == "raise":
            raise ValueError("the resolver failed")
        return self.name.upper() if isinstance(self.name, str) else self.name

    @strawberry.field
    async def later(self) -> Item | None:
        await asyncio.sleep(0)
        return self.children[0] if self.children else None

    @strawberry.field
    def with_argument(self, times: int = 1) -> list[int]:
        return [self.count] * times


@strawberry.type
class Query:
    @strawberry.field
    def root(self, info: strawberry.Info) -> Item | None:
        return info.context["root"]

    @strawberry.field
    def strict_root(self, info: strawberry.Info) -> Item:
        return info.context["root"]


QUERY = """
query {
  root { ...all children { ...all children { ...all } } loose_children: looseChildren { ...all }
         later { ...all later { name } } }
  strictRoot { name count price { amount } children { name colour } }
}
fragment all on Item {
  name note count colour colours price { amount currency } maybePrice { amount }
  shout twice: withArgument(times: 2) alias: name
  skipped: name @skip(if: true) included: price @include(if: true) { amount }
  ... on Item { maybePrice { currency } }
}
"""


def _schemas(**options: Any) -> tuple[strawberry.Schema, strawberry.Schema]:
    return (
        strawberry.Schema(query=Query, execution_context_class=LinkgateExecutor, **options),
        strawberry.Schema(
            query=Query, execution_context_class=StrawberryGraphQLCoreExecutionContext, **options
        ),
    )


PLANNED, STOCK = _schemas()


def _answer(result: Any) -> tuple[Any, list[tuple[str, str]]]:
    errors = sorted((str(error.path), error.message) for error in result.errors or ())
    return result.data, errors


async def _both(query: str, root: Any) -> tuple[Any, Any]:
    context = {"root": root}
    planned = await PLANNED.execute(query, context_value=context)
    stock = await STOCK.execute(query, context_value=context)
    return _answer(planned), _answer(stock)


def _value(draw: st.DrawFn, good: Any, bad: Any) -> Any:
    """Mostly the good value; sometimes null or a value of the wrong type."""
    return draw(st.sampled_from([good, good, good, None, bad]))


_AWKWARD_INTS = [2**31 - 1, 2**31, -(2**31), -(2**31) - 1, True, 3.0, 2.5]


@st.composite
def items(draw: st.DrawFn, depth: int = 3) -> Item:
    children = draw(st.lists(items(depth - 1), max_size=2)) if depth > 0 else []
    loose = draw(st.none() | st.lists(st.none() | items(depth - 1), max_size=2)) if depth > 0 else None
    return Item(
        name=_value(draw, draw(st.text(max_size=5)), 12),
        note=draw(st.sampled_from([None, "plain", "raise", 7])),
        # Past 32 bits, a bool or a float: not the short way for ints (schema/execution.py).
        count=_value(draw, draw(st.integers(-5, 5) | st.sampled_from(_AWKWARD_INTS)), "not a number"),
        # The enum's value rather than its member: not the short way for enums either.
        colour=_value(draw, draw(st.sampled_from([*Colour, "red"])), "GREEN"),
        colours=draw(st.lists(st.sampled_from([*Colour, "blue", "GREEN"]), max_size=3)),
        price=_value(draw, Money(amount=draw(st.integers(0, 99)), currency="EUR"), "not money"),
        maybe_price=draw(st.none() | st.just(Money(amount=1, currency="USD"))),
        children=_value(draw, children, 5),
        loose_children=loose,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(root=st.none() | items())
def test_planned_and_stock_executors_agree_on_any_tree(root: Item | None) -> None:
    planned, stock = asyncio.run(_both(QUERY, root))
    assert planned == stock


async def test_a_null_in_a_non_null_field_propagates_as_before() -> None:
    broken = Item(
        name=None, note=None, count=1, colour=Colour.RED, price=Money(amount=1, currency="EUR"),  # type: ignore[arg-type]
        maybe_price=None, children=[], loose_children=None,
    )
    planned, stock = await _both("{ root { name count } strictRoot { name } }", broken)
    assert planned == stock
    data, errors = planned
    assert data is None  # strictRoot is non-null: its error nulls the whole answer
    assert ("['root', 'name']", "Cannot return null for non-nullable field Item.name.") in errors


async def test_a_value_the_scalar_refuses_is_an_error_at_its_path() -> None:
    item = Item(
        name="a", note=None, count="many", colour=Colour.RED,  # type: ignore[arg-type]
        price=Money(amount=1, currency="EUR"), maybe_price=None, children=[], loose_children=None,
    )
    planned, stock = await _both("{ root { name count } }", item)
    assert planned == stock
    data, errors = planned
    assert data == {"root": None}
    assert [path for path, _ in errors] == ["['root', 'count']"]


class CountingMiddleware(SchemaExtension):
    """A ``resolve`` hook: it must still see every field."""

    calls = 0

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        CountingMiddleware.calls += 1
        return _next(root, info, *args, **kwargs)


async def test_a_resolve_hook_sees_every_field_as_with_graphql_core() -> None:
    planned, stock = _schemas(extensions=[CountingMiddleware])
    root = Item(
        name="a", note="n", count=1, colour=Colour.BLUE, price=Money(amount=2, currency="EUR"),
        maybe_price=None, children=[], loose_children=None,
    )
    query = "{ root { name note count price { amount currency } } }"
    seen = []
    for schema in (planned, stock):
        CountingMiddleware.calls = 0
        result = await schema.execute(query, context_value={"root": root})
        assert result.errors is None
        seen.append(CountingMiddleware.calls)
    assert seen[0] == seen[1] == 7  # root, name, note, count, price, amount, currency


DASHBOARD = """
query {
  viewer { user { email } accounts(first: 20) { totalCount edges { cursor node {
    id number name status viewerIsOwner viewerPermissions creditBalance
    creditLedger(first: 3) { edges { node { id kind delta balanceAfter createdAt note } } }
    linkGroups { id kind name head { number creditBalance } members { friendlyName linkedVia account { number creditBalance } } }
    invoices(first: 5) { totalCount edges { node { id number status issuedAt total { amount currency }
      lines { description quantity amount { amount } account { number } } } } }
    services { name status monthlyPrice { amount } }
    tickets(first: 5) { edges { node { number subject status messages { authorName authorKind body } } } }
    contacts { name email isBillingContact }
  } } } }
}
"""


@pytest.mark.parametrize("persona", ["olivia", "bill", "dev", "eve"])
async def test_the_dashboard_over_http_is_the_same_with_graphql_cores_executor(
    persona: str, app: Any, settings: Any, engine: Any, gql: GraphQLClient,
    tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import schema as schema_package
    from linkgate.app import create_app

    monkeypatch.setattr(schema_package, "LinkgateExecutor", StrawberryGraphQLCoreExecutionContext)
    stock_app = create_app(settings, engine=engine)
    async with client_for(stock_app) as http:
        stock = await GraphQLClient(http).execute(DASHBOARD, token=tokens[persona])
    planned = await gql.execute(DASHBOARD, token=tokens[persona])
    # The order of ``errors`` is not part of GraphQL's contract (it follows the order in
    # which fields fail, sync before async); everything in them is.
    assert planned["data"] == stock["data"]
    assert _sorted_errors(planned) == _sorted_errors(stock)
    assert planned["data"]["viewer"]["accounts"]["edges"], "the persona sees accounts"


def _sorted_errors(response: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(response.get("errors", []), key=lambda error: str(error.get("path")))
