"""Signed invoice download links (auth/download_tokens.py): what they accept and refuse."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest

from auth.download_tokens import (
    MAX_INVOICES_PER_LINK, DownloadLinkExpired, issue_download_token, read_download_token,
)
from auth.errors import BadInput, Unauthenticated
from auth.tokens import TokenSettings

SECRET = "download-test-secret-that-is-long-enough-123"


def issue(**overrides: object) -> str:
    values: dict[str, object] = dict(secret=SECRET, issuer="linkgate", user_id=7, token_version=3,
                                     invoice_ids=[11, 12], ttl=timedelta(minutes=5))
    values.update(overrides)
    return issue_download_token(**values)  # type: ignore[arg-type]


def test_round_trip() -> None:
    claims = read_download_token(issue(), secret=SECRET, issuer="linkgate")
    assert (claims.user_id, claims.token_version, claims.invoice_ids) == (7, 3, (11, 12))


def test_expired_links_say_so() -> None:
    with pytest.raises(DownloadLinkExpired):
        read_download_token(issue(ttl=timedelta(seconds=-1)), secret=SECRET, issuer="linkgate")


@pytest.mark.parametrize("token", [
    issue(secret=SECRET + "x"),                      # another key
    issue(issuer="someone-else"),                    # another issuer
    jwt.encode({"sub": "7", "ver": 3, "inv": [1], "iss": "linkgate", "exp": 9_999_999_999},
               SECRET, algorithm="HS256"),           # signed with the raw app secret, no audience
    TokenSettings(secret=SECRET).issue(user_id=7, token_version=3, session_id=1),  # a bearer token
    "not.a.token",
])
def test_foreign_or_tampered_tokens_are_refused(token: str) -> None:
    with pytest.raises(BadInput) as raised:
        read_download_token(token, secret=SECRET, issuer="linkgate")
    assert not isinstance(raised.value, DownloadLinkExpired)


def test_a_link_is_not_a_bearer_token() -> None:
    with pytest.raises(Unauthenticated):
        TokenSettings(secret=SECRET).read(issue())


@pytest.mark.parametrize("ids", [[], list(range(MAX_INVOICES_PER_LINK + 1))])
def test_a_link_covers_one_to_fifty_invoices(ids: list[int]) -> None:
    with pytest.raises(BadInput):
        issue(invoice_ids=ids)
