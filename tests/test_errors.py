"""Unexpected failures are masked: a code and a request id, never a traceback or SQL."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from graphql import GraphQLError

from auth.errors import PermissionDenied
from linkgate.app import create_app
from linkgate.settings import Settings
from schema.errors import INTERNAL_MESSAGE, shape_error
from tests.conftest import TEST_SECRET, GraphQLClient, client_for


def test_unexpected_errors_are_masked_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    original = RuntimeError("SELECT secret FROM users -- internal detail")
    error = GraphQLError("boom", original_error=original, path=["viewer"])
    with caplog.at_level(logging.ERROR, logger="linkgate.errors"):
        shaped = shape_error(error, "req-123")
    assert shaped.message == INTERNAL_MESSAGE
    assert shaped.extensions == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-123"}
    assert shaped.path == ["viewer"]
    assert "req-123" in caplog.text and "SELECT secret" in caplog.text


def test_expected_errors_keep_their_code_and_details() -> None:
    error = GraphQLError("x", original_error=PermissionDenied("No.", permission="INVOICES_READ"))
    shaped = shape_error(error, "req-1")
    assert shaped.message == "No."
    assert shaped.extensions == {"code": "FORBIDDEN", "permission": "INVOICES_READ"}


async def test_a_broken_database_answers_masked_json(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "db.sqlite"
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{missing}", secret_key=TEST_SECRET))
    async with client_for(app) as http:
        client = GraphQLClient(http)
        # Inside execution: the field fails, masked, HTTP 200 like any GraphQL error.
        in_resolver = await client.post(
            'mutation { login(input: {email: "a@b.example", password: "whatever"}) { token } }'
        )
        # Before execution (resolving the token's user): the whole request fails, masked.
        in_context = await client.post("{ viewer { user { name } } }", token=_token())
        ready = await http.get("/readyz")
    for response, status in ((in_resolver, 200), (in_context, 500)):
        assert response.status_code == status
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        assert error["extensions"]["requestId"] == response.headers["x-request-id"]
        assert "Traceback" not in response.text and "sqlite" not in response.text.lower()
    assert ready.status_code == 503


def _token() -> str:
    """A well-signed token: only the database behind it is missing."""
    from auth.tokens import TokenSettings

    return TokenSettings(secret=TEST_SECRET).issue(user_id=1, token_version=1, session_id=1)
