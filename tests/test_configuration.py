"""Configuration mistakes (issue 15): every setting, set wrong, stops the command with one
line that names it and exit status 2; never a traceback."""

from __future__ import annotations

import socket
import typing
from pathlib import Path

import pytest
from annotated_types import Ge, Gt, Le

from linkgate import cli
from linkgate.settings import ConfigurationError, Settings, get_settings, load_settings
from tests.servers import run_cli

# Settings whose wrong values cannot be derived from their type alone.
SPECIAL_CASES: dict[str, list[str]] = {
    "trusted_documents": ["/nonexistent/persisted-documents.json"],
    "database_url": ["mysql+aiomysql://db/linkgate", "postgresql://db/linkgate", "::not a url::",
                     "postgresql+asyncpg://app@db:5432/app?sslmode=require",
                     "postgresql+asyncpg://app@db:99999/app",
                     # A password with an unencoded @ or : — the parser's error would quote it.
                     "postgresql+asyncpg://app:Tr0ub@dor:S3cret@db.internal:5432/app",
                     "postgresql+asyncpg://app:Tr0ub@dorS3cret@127.0.0.1:5432/app"],
    "secret_key": ["too-short"],
    "smtp_url": ["ftp://mail.example", "mail.example:25", "smtp://mailer:Tr0ub/dorS3cret@smtp.example:587",
                 "smtp://mailer:Tr0ub#dorS3cret@smtp.example:587"],
    "mail_from": ["nobody", "Linkgate"],
    "inbound_smtp_host": ["mail host", "-bad-.example", "127.0.0.1:2525"],
    "support_address": ["support", "Support <support@linkgate.example>"],
    # The same as the support address: which department would a message go to?
    "billing_address": ["billing@", "support@linkgate.example"],
    "token_issuer": [""],
    "public_url": ["localhost:8000", "https://"],
    "trusted_proxies": ["10.0.0.0/33", "proxy.internal", "[1,"],
    "cors_origins": ["dashboard.example", '{"a": 1}', "https://dashboard.example/path"],
    "cors_allow_headers": ["sentry trace", "baggage, x:y", '["ok", "not ok"]'],
    "metrics_token": ["short"],
    "currency": ["eur", "EURO"],
    "seller_name": ["x" * 201, "Seller\u0007Ltd"],
    "seller_address": ["x" * 501, "Street 1\u0001"],
    "seller_tax_id": ["X" * 33],
    "payment_instructions": ["x" * 501],
    "payment_gateway": ["paypal", "stripe"],  # stripe without its keys
    "stripe_api_key": ["pk_live_publishable0123", "sk_"],
    "stripe_webhook_secret": ["sk_test_notawebhooksecret"],
    "stripe_api_base": ["stripe.local:12111", "ftp://stripe.local"],
}


def wrong_values(name: str) -> list[str]:
    """Values that ``name`` must refuse, from its type and bounds (and SPECIAL_CASES)."""
    field = Settings.model_fields[name]
    annotation = field.annotation
    values = list(SPECIAL_CASES.get(name, []))
    if annotation is bool:
        values.append("maybe")
    elif annotation is int or annotation is float:
        values.append("twelve")
        if annotation is float:
            values += ["nan", "inf"]
        for bound in field.metadata:
            if isinstance(bound, Ge):
                values.append(str(bound.ge - 1))
            elif isinstance(bound, Gt):
                values.append(str(bound.gt))
            elif isinstance(bound, Le):
                values.append(str(bound.le + 1))
    elif typing.get_origin(annotation) is typing.Literal:
        values.append("loudest")
    return values


CASES = [(name, value) for name in Settings.model_fields for value in wrong_values(name)]


def test_every_setting_has_a_wrong_value_tested() -> None:
    """A new setting needs a way to be wrong here, so its error message gets checked too."""
    untested = [name for name in Settings.model_fields if not wrong_values(name)]
    assert not untested


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={v!r}" for n, v in CASES])
def test_a_wrong_setting_is_one_line_naming_it(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    variable = f"LINKGATE_{name.upper()}"
    for key in list(__import__("os").environ):
        if key.startswith("LINKGATE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith(f"{variable}: "), message
    assert "\n" not in message and "Traceback" not in message
    if name in ("secret_key", "metrics_token", "smtp_url", "database_url", "stripe_api_key",
                "stripe_webhook_secret") and len(value) > 3:
        assert value not in message  # what may hold a password is never echoed
        assert "Tr0ub" not in message and "S3cret" not in message, message


def test_the_cli_exits_2_with_that_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LINKGATE_MAX_PAGE_SIZE", "lots")
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main(["db", "upgrade"])
    finally:
        get_settings.cache_clear()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == "linkgate: configuration error: LINKGATE_MAX_PAGE_SIZE: Input should be a valid integer, " \
        "unable to parse string as an integer (got 'lots')\n"


@pytest.mark.parametrize(("args", "env", "expected"), [
    # The three found by the issue: 47 lines, 179 lines and two tracebacks before.
    (["db", "upgrade"], {"LINKGATE_CORS_ORIGINS": "https://a.example, not-an-origin"}, "LINKGATE_CORS_ORIGINS: "),
    (["db", "upgrade"], {"LINKGATE_DATABASE_URL": "postgresql+asyncpg://nobody:hunter2-secret@127.0.0.1:1/x"},
     "cannot use the database at LINKGATE_DATABASE_URL (postgresql+asyncpg://nobody:***@127.0.0.1:1/x)"),
    (["serve", "--port", "99999"], {}, "argument --port: 99999 is not between 1 and 65535"),
    (["serve", "--workers", "0"], {}, "argument --workers: 0 is not between 1 and 256"),
    (["serve", "--demo"], {"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER: unknown trace exporter 'jaeger'"),
    (["send-notifications"], {"LINKGATE_SMTP_URL": "smtp://mail.example:notaport"}, "LINKGATE_SMTP_URL: "),
    (["invoice-run", "--period", "2020-01"], {"LINKGATE_DATABASE_URL": "sqlite+aiosqlite:////nonexistent/dir/x.db"},
     "cannot use the database at LINKGATE_DATABASE_URL"),
    (["export-schema", "-o", "/nonexistent/dir/schema.graphql"], {},
     "cannot write /nonexistent/dir/schema.graphql: No such file or directory"),
    # `docker compose run` without -it: no terminal to ask for the password on.
    (["create-staff", "--email", "a@b.example", "--name", "A", "--role", "ADMIN"], {},
     "no password: set LINKGATE_STAFF_PASSWORD, or run the command in a terminal"),
    (["create-staff", "--email", "a@b.example", "--name", "A", "--role", "ADMIN"],
     {"LINKGATE_STAFF_PASSWORD": "short"}, "the password must be at least 8 characters long"),
])
def test_named_mistakes_from_a_shell(tmp_path: Path, args: list[str], env: dict[str, str], expected: str) -> None:
    result = run_cli(args, tmp_path, **env)
    assert result.returncode == 2, result
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr
    # argparse prints its usage first; everything else is exactly one line.
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("usage:", " "))]
    assert len(lines) == 1, result.stderr


def test_an_address_that_cannot_be_served_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for host, expected in (("999.1.1.1", "cannot listen on 999.1.1.1:"),
                               ("127.0.0.1", f"cannot listen on 127.0.0.1:{port}: Address already in use")):
            result = run_cli(["serve", "--demo", "--host", host, "--port", str(port)], tmp_path)
            assert result.returncode == 2 and expected in result.stderr, result.stderr
            assert result.stderr.count("\n") == 1
    assert not (tmp_path / "linkgate.db").exists()  # refused before migrating anything


def test_serve_no_upgrade_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    result = run_cli(["serve", "--no-upgrade"], tmp_path, LINKGATE_SECRET_KEY="k" * 40)
    assert result.returncode == 2
    assert "not migrated" in result.stderr and "linkgate db upgrade" in result.stderr
    assert result.stderr.count("\n") == 1


async def test_the_pool_follows_its_settings(settings: Settings) -> None:
    """Issue 17: at 8 concurrent requests a pool of 5 closed and reopened ~60 connections in
    40 s; the pool is now a setting (and 10 + 10 by default)."""
    from linkgate.app import create_app

    assert (Settings().db_pool_size, Settings().db_max_overflow) == (10, 10)
    app = create_app(settings.model_copy(update={"db_pool_size": 3, "db_max_overflow": 2,
                                                 "db_pool_timeout_seconds": 4.0}))
    pool = app.state.engine.sync_engine.pool
    assert (pool.size(), pool._max_overflow, pool._timeout) == (3, 2, 4.0)
    await app.state.engine.dispose()
