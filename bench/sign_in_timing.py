"""No oracle by timing: how long the identity mutations take for a registered email and for
an unknown one, measured side by side in one run.

    .venv/bin/python -m bench.sign_in_timing                 # temporary SQLite, 30 pairs
    .venv/bin/python -m bench.sign_in_timing --pairs 60 --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

For each mutation it sends requests in pairs (registered, unknown, registered, unknown …, so
machine noise hits both alike) through the real app over HTTP (httpx ASGI transport), each
from an address of its own so the throttle never answers instead, and prints the two medians
and their ratio. DESIGN asks for the same answer in the same time; the issue's bar is a
ratio within 20 % (0.83–1.20). Exits 1 if a ratio is outside it.

- ``login``: a wrong password for a registered email vs an unknown email (both run one argon2
  verification: ``auth.passwords``).
- ``requestPasswordReset`` and ``signUp``: a registered vs an unknown email (both end no
  sooner than ``LINKGATE_ANSWER_FLOOR_SECONDS``: ``resolvers/timing.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx

from bench.dataset import temporary_database
from linkgate.app import create_app
from linkgate.migrations import upgrade_database
from linkgate.settings import Settings
from auth.passwords import hash_password
from models.database import create_engine, create_session_factory
from models.users import User

LOGIN = "mutation($i: LoginInput!) { login(input: $i) { token userErrors { code } } }"
RESET = "mutation($i: RequestPasswordResetInput!) { requestPasswordReset(input: $i) { ok } }"
SIGN_UP = "mutation($i: SignUpInput!) { signUp(input: $i) { ok } }"
BAR = (1 / 1.2, 1.2)


def _client(app: object, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://bench")


async def _registered(url: str, email: str) -> None:
    """A login for ``email`` with a real argon2 hash, as sign-up would store it."""
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:
            session.add(User(email=email, name="Bench", password_hash=hash_password("the right password")))
            await session.commit()
    finally:
        await engine.dispose()


async def _pairs(
    name: str, pairs: int, send: Callable[[bool, int], Awaitable[None]]
) -> tuple[float, float]:
    times: dict[bool, list[float]] = {True: [], False: []}
    for index in range(pairs):
        for registered in (True, False):
            started = time.perf_counter()
            await send(registered, index)
            times[registered].append(time.perf_counter() - started)
    known, unknown = statistics.median(times[True]), statistics.median(times[False])
    print(f"{name:<22} registered {known * 1000:8.1f} ms   unknown {unknown * 1000:8.1f} ms   "
          f"ratio {known / unknown:5.2f}")
    return known, unknown


async def run(url: str, pairs: int) -> int:
    email = f"timing-{uuid.uuid4().hex[:8]}@bench.example"
    await _registered(url, email)
    # Limits out of the way: this measures what an answer costs, not when the throttle or a
    # mail cap answers instead (their answers are the same for every email anyway).
    settings = Settings(database_url=url, secret_key=secrets.token_urlsafe(48),
                        login_email_max_failures=1_000_000, mail_links_per_client=1_000_000)
    app = create_app(settings)
    ratios = []
    print(f"database {url.split(':', 1)[0]}; {pairs} pairs each; medians")

    async def login(registered: bool, index: int) -> None:
        target = email if registered else f"nobody-{uuid.uuid4().hex[:8]}@bench.example"
        async with _client(app, f"10.{index // 250}.{index % 250}.{int(registered)}") as http:
            response = await http.post("/graphql", json={"query": LOGIN, "variables": {
                "i": {"email": target, "password": "a wrong password"}}})
            assert response.json()["data"]["login"]["userErrors"][0]["code"] == "INVALID_CREDENTIALS"

    async def reset(registered: bool, index: int) -> None:
        target = email if registered else f"nobody-{uuid.uuid4().hex[:8]}@bench.example"
        async with _client(app, "10.200.0.1") as http:
            response = await http.post("/graphql", json={"query": RESET, "variables": {"i": {"email": target}}})
            assert response.json()["data"]["requestPasswordReset"]["ok"] is True

    async def signup(registered: bool, index: int) -> None:
        target = email if registered else f"new-{uuid.uuid4().hex[:8]}@bench.example"
        async with _client(app, "10.201.0.1") as http:
            response = await http.post("/graphql", json={"query": SIGN_UP, "variables": {"i": {
                "email": target, "password": "some password", "name": "N", "accountName": "A"}}})
            assert response.json()["data"]["signUp"]["ok"] is True

    async with app.router.lifespan_context(app):
        for name, send in (("login", login), ("requestPasswordReset", reset), ("signUp", signup)):
            known, unknown = await _pairs(name, pairs, send)
            ratios.append(known / unknown)
    inside = all(BAR[0] <= ratio <= BAR[1] for ratio in ratios)
    print("all ratios within 20 %" if inside else "a ratio is outside 20 %")
    return 0 if inside else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server URL; default SQLite")
    options = parser.parse_args(argv)
    with temporary_database(options.database_url) as url:
        upgrade_database(url)
        return asyncio.run(run(url, options.pairs))


if __name__ == "__main__":
    sys.exit(main())
