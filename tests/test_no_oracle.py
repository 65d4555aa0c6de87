"""No oracle: an unknown email costs what a registered one costs (the timing itself is
measured by ``bench.sign_in_timing``, which prints the medians side by side)."""

from __future__ import annotations

from typing import Any

import pytest

import auth.passwords
import resolvers.sign_in
from tests.conftest import GraphQLClient, client_for
from tests.customers import new_customer, unique_email

LOGIN = "mutation($input: LoginInput!) { login(input: $input) { token userErrors { code } } }"


def test_verifying_against_no_hash_still_runs_one_argon2_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = auth.passwords._hasher

    class Counting:
        def verify(self, hash_: str, password: str) -> bool:
            calls.append(hash_)
            return real.verify(hash_, password)

    monkeypatch.setattr(auth.passwords, "_hasher", Counting())
    assert auth.passwords.verify_password(None, "linkgate-timing-equaliser") is False
    assert calls == [auth.passwords._DUMMY_HASH]


async def test_an_unknown_email_and_a_wrong_password_each_run_one_hash(
    app: Any, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await new_customer(gql)
    hashes: list[str | None] = []
    real = resolvers.sign_in.verify_password

    def counting(password_hash: str | None, password: str) -> bool:
        hashes.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(resolvers.sign_in, "verify_password", counting)
    async with client_for(app, "10.60.0.1") as http:
        client = GraphQLClient(http)
        # The last could be no stored email at all (over 254 characters): it still costs a hash.
        for email in (owner.email, unique_email(), "bad@" + "x" * 300 + ".example"):
            result = await client.execute(LOGIN, {"input": {"email": email, "password": "wrong password"}})
            assert result["data"]["login"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
    assert len(hashes) == 3 and hashes[0] is not None and hashes[1:] == [None, None]
