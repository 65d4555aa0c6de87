"""What a request costs beyond its fields: validation once per document, nothing kept after."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiodataloader import DataLoader
import strawberry.schema.schema as strawberry_schema

import linkgate.app
from schema.context import Context
from tests.conftest import GraphQLClient
from tests.test_hardening import DEEP, MANY_ALIASES


async def test_a_repeated_document_is_validated_once(
    gql: GraphQLClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limits' validation rules are built once (``create_app``): rules made per request
    would miss the validation cache every time."""
    calls = []
    validate = strawberry_schema.validate

    def counting_validate(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return validate(*args, **kwargs)

    monkeypatch.setattr(strawberry_schema, "validate", counting_validate)
    query = f"{{ viewer {{ user {{ name }} }} first_{uuid.uuid4().hex}: __typename }}"
    for _ in range(3):
        result = await gql.execute(query, token=tokens["olivia"])
        assert result["data"]["viewer"]["user"]["name"] == "Olivia Northwind"
    assert len(calls) == 1


@pytest.mark.parametrize("query", [DEEP, MANY_ALIASES])
async def test_a_cached_validation_still_refuses(gql: GraphQLClient, query: str) -> None:
    for _ in range(2):
        body = (await gql.post(query)).json()
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


async def test_a_finished_request_keeps_no_loaded_rows(
    gql: GraphQLClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """graphql-core's executor sits in a reference cycle that reaches the context; the rows
    its loaders hold must go when the request ends, not at the next full collection."""
    contexts: list[Context] = []
    build_context = linkgate.app.build_context

    def recording_build_context(*args: Any, **kwargs: Any) -> Context:
        contexts.append(build_context(*args, **kwargs))
        return contexts[-1]

    monkeypatch.setattr(linkgate.app, "build_context", recording_build_context)
    result = await gql.execute(
        "{ viewer { accounts(first: 5) { edges { node { invoices(first: 3) { edges { node { "
        "lines { description } } } } } } } } }",
        token=tokens["olivia"],
    )
    assert result["data"]["viewer"]["accounts"]["edges"]
    (context,) = contexts
    # Loaders are built on first use: the ones this query used, and nothing else of the request.
    loaders = {name: value for name, value in vars(context.loaders).items() if isinstance(value, DataLoader)}
    assert loaders["invoice_pages_by_payer_id"] is not None
    # aiodataloader keeps its cache in ``_cache``: empty for every loader once released.
    assert {name: len(loader._cache) for name, loader in loaders.items()} == dict.fromkeys(loaders, 0)
