"""The `linkgate` command, run as a newcomer would: in a subprocess, from an empty folder."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pyotp
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import create_async_engine

from auth.totp import matching_step, recovery_code_digest
from models import Base
from models.identity import RecoveryCode
from models.users import User
from schema import print_schema_sdl
from tests.conftest import TEST_SECRET
from tests.servers import LINKGATE, clean_environment, run_cli as run, running_server


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_db_upgrade_creates_the_whole_schema(tmp_path: Path, empty_database: str) -> None:
    result = run(["db", "upgrade"], tmp_path, LINKGATE_DATABASE_URL=empty_database, LINKGATE_SECRET_KEY=TEST_SECRET)
    assert result.returncode == 0, result.stderr
    assert set(Base.metadata.tables) <= _tables(empty_database)
    again = run(["db", "upgrade"], tmp_path, LINKGATE_DATABASE_URL=empty_database, LINKGATE_SECRET_KEY=TEST_SECRET)
    assert again.returncode == 0, again.stderr


def test_export_schema_writes_the_sdl(tmp_path: Path) -> None:
    result = run(["export-schema", "--output", "out.graphql"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.graphql").read_text(encoding="utf-8") == print_schema_sdl()


def test_serving_without_a_secret_key_is_one_line(tmp_path: Path) -> None:
    result = run(["serve", "--port", "1"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "LINKGATE_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "linkgate.db").exists()  # refused before touching the database


def test_commands_that_sign_nothing_need_no_secret_key(tmp_path: Path, empty_database: str) -> None:
    """Migrating, invoicing, delivering mail and creating staff sign no token: they run with
    only a database URL (they used to demand LINKGATE_SECRET_KEY and point at the demo)."""
    env = {"LINKGATE_DATABASE_URL": empty_database, "LINKGATE_STAFF_PASSWORD": "staff-password-1"}
    for command in (
        ["db", "upgrade"],
        ["invoice-run", "--period", "2020-01"],
        ["send-notifications"],
        ["create-staff", "--email", "ops@linkgate.example", "--name", "Ops", "--role", "ADMIN"],
    ):
        result = run(command, tmp_path, **env)
        assert result.returncode == 0, (command, result.stderr)
        assert "SECRET_KEY" not in result.stderr + result.stdout


def test_create_staff(tmp_path: Path, empty_database: str) -> None:
    env = {
        "LINKGATE_DATABASE_URL": empty_database, "LINKGATE_SECRET_KEY": TEST_SECRET,
        "LINKGATE_STAFF_PASSWORD": "staff-password-1",
    }
    assert run(["db", "upgrade"], tmp_path, **env).returncode == 0
    created = run(["create-staff", "--email", "Root@Linkgate.example", "--name", "Root", "--role", "ADMIN"], tmp_path, **env)
    assert created.returncode == 0, created.stderr
    assert "root@linkgate.example" in created.stdout
    duplicate = run(["create-staff", "--email", "root@linkgate.example", "--name", "Root", "--role", "ADMIN"], tmp_path, **env)
    assert duplicate.returncode != 0
    assert "already exists" in duplicate.stderr and "Traceback" not in duplicate.stderr


def test_create_staff_with_totp(tmp_path: Path, empty_database: str) -> None:
    """--totp turns two-factor sign-in on at once and prints the secret and codes, once."""
    env = {
        "LINKGATE_DATABASE_URL": empty_database, "LINKGATE_SECRET_KEY": TEST_SECRET,
        "LINKGATE_STAFF_PASSWORD": "staff-password-1",
    }
    assert run(["db", "upgrade"], tmp_path, **env).returncode == 0
    created = run(["create-staff", "--email", "sec@linkgate.example", "--name", "Sec", "--role", "SUPPORT",
                   "--totp"], tmp_path, **env)
    assert created.returncode == 0, created.stderr
    uri = re.search(r"otpauth://\S+", created.stdout)
    assert uri, created.stdout
    secret = pyotp.parse_uri(uri.group(0)).secret
    assert secret in created.stdout  # also printed for typing in by hand
    codes = re.findall(r"^\s+([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})$", created.stdout, re.MULTILINE)
    assert len(set(codes)) == 10, created.stdout

    async def stored() -> tuple[str | None, bool, set[str]]:
        engine = create_async_engine(empty_database)
        try:
            async with engine.connect() as connection:
                user = (await connection.execute(
                    select(User.id, User.totp_secret, User.totp_enabled_at)
                    .where(User.email == "sec@linkgate.example")
                )).one()
                hashes = set(await connection.scalars(
                    select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)
                ))
                return user.totp_secret, user.totp_enabled_at is not None, hashes
        finally:
            await engine.dispose()

    stored_secret, enabled, hashes = asyncio.run(stored())
    assert stored_secret == secret and enabled
    assert hashes == {recovery_code_digest(code) for code in codes}
    assert matching_step(secret, pyotp.TOTP(secret).now(), last_step=None) is not None

    plain = run(["create-staff", "--email", "plain@linkgate.example", "--name", "Plain", "--role", "SUPPORT"],
                tmp_path, **env)
    assert plain.returncode == 0 and "otpauth" not in plain.stdout


def test_serve_demo_from_an_empty_folder(tmp_path: Path) -> None:
    """The README's demo: migrates a SQLite file, seeds, prints the logins, serves GraphiQL."""
    with running_server(LINKGATE + ["serve", "--demo"], environment=clean_environment(),
                        cwd=tmp_path, ready_path="/healthz") as server:
        base = server.base
        assert "graphiql" in httpx.get(f"{base}/graphql", headers={"accept": "text/html"}).text.lower()
        login = httpx.post(f"{base}/graphql", json={"query": 'mutation { login(input: {email: "olivia@northwind.example", password: "demo-password"}) { token } }'}).json()
        token = login["data"]["login"]["token"]
        accounts = httpx.post(
            f"{base}/graphql", headers={"authorization": f"Bearer {token}"},
            json={"query": "{ viewer { accounts { edges { node { name creditBalance } } } } }"},
        ).json()
        names = {edge["node"]["name"] for edge in accounts["data"]["viewer"]["accounts"]["edges"]}
        assert "Northwind Head Office" in names and len(names) == 4
    assert "olivia@northwind.example" in server.output and "demo-password" in server.output
    assert f"{base}/graphql" in server.output
    assert (tmp_path / "linkgate.db").exists()
