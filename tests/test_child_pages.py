"""Paginated children of many parents, loaded together: pages, cursors and counts stay right."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import GraphQLClient
from tests.test_dashboard_statements import _owner_with_accounts

PAGES = """
query($after: String) { viewer { accounts(first: 4) { edges { node {
  number
  invoices(first: 2, after: $after) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { node { number issuedAt } }
  }
} } } } }
"""


@pytest.fixture(scope="module")
async def owner(engine: AsyncEngine) -> str:
    return await _owner_with_accounts(engine, 4)  # three invoices per account


async def test_every_parent_gets_its_own_first_page(gql: GraphQLClient, owner: str) -> None:
    result = await gql.execute(PAGES, token=owner)
    accounts = [edge["node"] for edge in result["data"]["viewer"]["accounts"]["edges"]]
    assert len(accounts) == 4
    for account in accounts:
        invoices = account["invoices"]
        numbers = [edge["node"]["number"] for edge in invoices["edges"]]
        issued = [edge["node"]["issuedAt"] for edge in invoices["edges"]]
        assert len(numbers) == 2 and issued == sorted(issued, reverse=True)
        assert invoices["totalCount"] == 3
        assert invoices["pageInfo"]["hasNextPage"] is True
        assert invoices["pageInfo"]["hasPreviousPage"] is False


async def test_a_cursor_continues_one_parent(gql: GraphQLClient, owner: str) -> None:
    first = await gql.execute(PAGES, token=owner)
    account: dict[str, Any] = first["data"]["viewer"]["accounts"]["edges"][0]["node"]
    seen = [edge["node"]["number"] for edge in account["invoices"]["edges"]]
    cursor = account["invoices"]["pageInfo"]["endCursor"]
    second = await gql.execute(PAGES, {"after": cursor}, token=owner)
    same = next(edge["node"] for edge in second["data"]["viewer"]["accounts"]["edges"]
                if edge["node"]["number"] == account["number"])
    rest = [edge["node"]["number"] for edge in same["invoices"]["edges"]]
    assert len(rest) == 1 and not set(rest) & set(seen)
    assert same["invoices"]["pageInfo"] == {
        "hasNextPage": False, "hasPreviousPage": True, "endCursor": same["invoices"]["pageInfo"]["endCursor"],
    }
