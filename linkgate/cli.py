"""The ``linkgate`` command: serve, db upgrade, export-schema, send-notifications, receive-mail,
invoice-run, create-staff."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from linkgate.event_bus import install_commit_hooks
from linkgate.logs import configure_logging
from linkgate.settings import ConfigurationError, Settings, get_settings

T = TypeVar("T")

# Exit status of a command that could not start: a setting, an argument or the database.
CONFIGURATION_ERROR = 2


def _fail(message: str) -> NoReturn:
    print(f"linkgate: {message}", file=sys.stderr)
    raise SystemExit(CONFIGURATION_ERROR)


def _settings() -> Settings:
    """The settings, with logging set up from them; a bad one ends the command in one line."""
    try:
        settings = get_settings()
    except ConfigurationError as error:
        _fail(f"configuration error: {error}")
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _signing_key(settings: Settings) -> None:
    try:
        settings.signing_key  # noqa: B018
    except ConfigurationError as error:
        _fail(f"configuration error: {error} (or try the demo: `linkgate serve --demo`)")


def _with_database(settings: Settings, work: Callable[[], T]) -> T:
    """Runs ``work``; a database that cannot be reached or used is one line, exit 2."""
    try:
        return work()
    except (OSError, DBAPIError) as error:
        reason = error.orig if isinstance(error, DBAPIError) else error
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        first_line = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
        _fail(f"cannot use the database at LINKGATE_DATABASE_URL ({where}): {first_line}")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.demo:
        # Environment, not arguments: every uvicorn worker process reads the same settings.
        os.environ["LINKGATE_DEMO"] = "true"
        get_settings.cache_clear()
    settings = _settings()
    _signing_key(settings)
    _check_address(args.host, args.port)
    _prepare_observability(args.workers)
    if args.no_upgrade:
        _with_database(settings, lambda: _require_current_schema(settings))
    else:
        _with_database(settings, lambda: _upgrade(settings))
    if settings.demo:
        from linkgate.demo import DEMO_LOGINS, DEMO_PASSWORD

        created = _with_database(settings, lambda: asyncio.run(_seed_demo(settings)))
        print("Demo data", "seeded." if created else "already present, re-used.")
        print(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        for email, who in DEMO_LOGINS:
            print(f"  {email:<28} {who}")
    where = f"http://{args.host}:{args.port}/graphql"
    print(f"GraphiQL: {where}" if settings.graphiql else f"GraphQL endpoint: {where}", flush=True)
    if args.workers > 1:
        from linkgate.serving import keep_tcp_nodelay_with_workers

        keep_tcp_nodelay_with_workers()
    from linkgate.logs import logging_config

    uvicorn.run(
        "linkgate.asgi:app", host=args.host, port=args.port, workers=args.workers,
        proxy_headers=False,
        # A socket message may be as large as a request body (uvicorn's own default: 16 MiB).
        ws_max_size=settings.max_body_bytes,
        # Our one logging setup in every worker; the access line is ours (with request id).
        log_config=logging_config(settings.log_format, settings.log_level), access_log=False,
    )
    return 0


def _check_address(host: str, port: int) -> None:
    """Binds once and lets go, before migrating and seeding: an address that cannot be
    served (a typo, a port in use) is one line now rather than uvicorn's exit later."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        _fail(f"cannot listen on {host}:{port}: {error.strerror or error}")


def _prepare_observability(workers: int) -> None:
    """Checks what the workers would otherwise find wrong one by one (``OTEL_*``), and gives
    ``--workers`` a metrics directory: several workers count into files there, and a scrape
    adds them up. Given one (``PROMETHEUS_MULTIPROC_DIR``), its files from an earlier run are
    removed, as prometheus-client asks; not given one, a fresh directory lives as long as
    the server."""
    from linkgate.tracing import exporter_names

    try:
        exporter_names()
    except ConfigurationError as error:
        _fail(f"configuration error: {error}")
    variable = "PROMETHEUS_MULTIPROC_DIR"
    directory = os.environ.get(variable)
    if directory:
        path = Path(directory)
        if not path.is_dir() or not os.access(path, os.W_OK):
            _fail(f"configuration error: {variable}: {directory!r} is not a writable directory")
        # Only prometheus-client's own files: never anything else that lives there.
        for kind in ("counter", "gauge", "histogram", "summary"):
            for stale in path.glob(f"{kind}_*.db"):
                stale.unlink(missing_ok=True)
    elif workers > 1:
        import atexit
        import shutil
        import tempfile

        os.environ[variable] = tempfile.mkdtemp(prefix="linkgate-metrics-")
        atexit.register(shutil.rmtree, os.environ[variable], ignore_errors=True)


def _upgrade(settings: Settings) -> None:
    from linkgate.migrations import upgrade_database

    upgrade_database(settings.database_url)


def _require_current_schema(settings: Settings) -> None:
    """``serve --no-upgrade`` (replicas): the migration ran as its own step, or we stop."""
    from linkgate.migrations import pending_revisions

    pending = pending_revisions(settings.database_url)
    if pending:
        _fail(f"the database at LINKGATE_DATABASE_URL is not migrated ({len(pending)} "
              "migration(s) pending): run `linkgate db upgrade` first")


async def _seed_demo(settings: Settings) -> bool:
    from linkgate.demo import seed_demo
    from models.database import create_engine, create_session_factory

    engine = create_engine(settings.database_url)
    try:
        async with create_session_factory(engine)() as session:
            created = await seed_demo(session)
            await session.commit()
            return created
    finally:
        await engine.dispose()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings()
    _with_database(settings, lambda: _upgrade(settings))
    print("Database is up to date.")
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    from schema import print_schema_sdl

    sdl = print_schema_sdl()
    if args.output == "-":
        sys.stdout.write(sdl)
    else:
        try:
            Path(args.output).write_text(sdl, encoding="utf-8")
        except OSError as error:
            _fail(f"cannot write {args.output}: {error.strerror or error}")
        print(f"Wrote {args.output}")
    return 0


def cmd_create_staff(args: argparse.Namespace) -> int:
    from resolvers.staff import StaffNotCreated, create_staff
    from resolvers.two_factor import TwoFactorSetUp, set_up_two_factor

    settings = _settings()
    password = os.environ.get("LINKGATE_STAFF_PASSWORD")
    if not password:
        if not sys.stdin.isatty():  # `docker compose run` without -it, a script, cron
            _fail("no password: set LINKGATE_STAFF_PASSWORD, or run the command in a terminal")
        password = getpass.getpass("Password: ")
    if len(password) < 8:
        _fail("the password must be at least 8 characters long")

    async def run() -> tuple[str, TwoFactorSetUp | None]:
        from models.database import create_engine, create_session_factory
        from models.users import StaffRole

        engine = create_engine(settings.database_url)
        try:
            async with create_session_factory(engine)() as session:
                user = await create_staff(
                    session, email=args.email, name=args.name,
                    role=StaffRole(args.role), password=password,
                )
                # With LINKGATE_STAFF_REQUIRE_TOTP a staff login without it cannot sign in.
                two_factor = await set_up_two_factor(session, user=user) if args.totp else None
                return user.email, two_factor
        finally:
            await engine.dispose()

    try:
        email, two_factor = _with_database(settings, lambda: asyncio.run(run()))
    except StaffNotCreated as error:
        raise SystemExit(f"linkgate: {error}") from None
    print(f"Created {args.role} staff user {email}")
    if two_factor is not None:
        print("Two-factor sign-in is on. Shown only now; hand them to the user alone:")
        print(f"  Authenticator URI (as a QR code): {two_factor.otpauth_uri}")
        print(f"  Secret (to type in by hand):      {two_factor.secret}")
        print("  Recovery codes (each signs in once instead of a code):")
        for code in two_factor.recovery_codes:
            print(f"    {code}")
    return 0


def cmd_send_notifications(args: argparse.Namespace) -> int:
    """Deliver the outbox once; exit 1 when some message failed (it stays queued).

    Sending needs LINKGATE_SECRET_KEY (outside demo mode): invoice emails carry the invoice
    PDF, which prints the account's enrollment token, derived from it. Only marking rows as
    sent (no LINKGATE_SMTP_URL) renders nothing and needs no key."""
    from linkgate.notifications import mailboxes_of, smtp_server
    from models.database import create_engine, create_session_factory
    from resolvers.delivery import deliver_notifications
    from resolvers.invoice_documents import Printing

    settings = _settings()  # a malformed LINKGATE_SMTP_URL is a configuration error there
    smtp = smtp_server(settings)
    printing = Printing.of(settings.tunables())
    if smtp is not None and not printing.enrollment_key:
        _fail("configuration error: LINKGATE_SECRET_KEY: required to send mail (invoice PDFs "
              "print the enrollment token derived from it); without LINKGATE_SMTP_URL rows "
              "are only marked as sent")

    async def run() -> tuple[int, int, int]:
        engine = create_engine(settings.database_url)
        try:
            report = await deliver_notifications(
                create_session_factory(engine), smtp=smtp, sender=settings.mail_from,
                max_attempts=settings.notification_max_attempts, limit=args.limit,
                printing=printing, mailboxes=mailboxes_of(settings),
            )
            return report.sent, report.failed, report.marked
        finally:
            await engine.dispose()

    sent, failed, marked = _with_database(settings, lambda: asyncio.run(run()))
    if smtp is None:
        print(f"LINKGATE_SMTP_URL is not set: marked {marked} notification(s) as sent without sending.")
    else:
        print(f"Sent {sent} notification(s); {failed} failed and stay queued.")
    return 1 if failed else 0


def cmd_receive_mail(args: argparse.Namespace) -> int:
    """Run the SMTP listener for tickets by email until SIGINT/SIGTERM (DESIGN §1 Tickets).

    Like ``serve --no-upgrade`` it migrates nothing: it runs beside the gateway, against a
    database `linkgate db upgrade` (or `serve`) has already brought up to date."""
    from linkgate.mail_listener import receive_until_stopped

    settings = _settings()
    host = args.host or settings.inbound_smtp_host
    port = args.port or settings.inbound_smtp_port
    _check_address(host, port)
    _with_database(settings, lambda: _require_current_schema(settings))

    def ready() -> None:
        print(f"Receiving mail on {host}:{port} for {settings.support_address} (TECHNICAL) and "
              f"{settings.billing_address} (BILLING).", flush=True)

    asyncio.run(receive_until_stopped(settings, host=host, port=port, ready=ready))
    print("Mail listener stopped.")
    return 0


def cmd_invoice_run(args: argparse.Namespace) -> int:
    """Invoice an ended month; exit 2 on a bad period. Re-running a month creates nothing."""
    from models.database import create_engine, create_session_factory
    from resolvers.invoicing import run_invoicing

    settings = _settings()

    async def run() -> str:
        engine = create_engine(settings.database_url)
        try:
            async with create_session_factory(engine)() as session:
                result = await run_invoicing(
                    session, period=args.period, tunables=settings.tunables(), actor=None
                )
                if isinstance(result, list):
                    raise SystemExit(f"linkgate: {result[0].message}")
                numbers = ", ".join(invoice.number for invoice in result.invoices)
                return (f"Invoice run {result.period.name}: {len(result.invoices)} invoice(s) issued"
                        f"{': ' + numbers if numbers else ''}; "
                        f"{result.fees_charged} service fee(s) charged.")
        finally:
            await engine.dispose()

    try:
        print(_with_database(settings, lambda: asyncio.run(run())))
    except SystemExit as error:
        if error.code == CONFIGURATION_ERROR:
            raise
        print(error, file=sys.stderr)
        return 2
    return 0


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    parse.__name__ = "number"
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linkgate", description="Linkgate GraphQL gateway")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway (uvicorn)")
    serve.add_argument("--demo", action="store_true", help="migrate, seed the demo and serve it")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_bounded_int(1, 65_535), default=8000)
    serve.add_argument("--workers", type=_bounded_int(1, 256), default=1)
    serve.add_argument(
        "--no-upgrade", action="store_true",
        help="do not migrate; refuse to start unless `linkgate db upgrade` already ran "
        "(for replicas: migrate once, as its own step)",
    )
    serve.set_defaults(handler=cmd_serve)

    db = commands.add_parser("db", help="database commands")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply the Alembic migrations")
    upgrade.set_defaults(handler=cmd_db_upgrade)

    export = commands.add_parser("export-schema", help="write the SDL (schema.graphql)")
    export.add_argument("--output", "-o", default="schema.graphql", help="a path, or - for stdout")
    export.set_defaults(handler=cmd_export_schema)

    send = commands.add_parser(
        "send-notifications",
        help="deliver the notification outbox over SMTP (LINKGATE_SMTP_URL), once",
    )
    send.add_argument("--limit", type=_bounded_int(1, 1_000_000), default=None,
                      help="at most this many messages")
    send.set_defaults(handler=cmd_send_notifications)

    receive = commands.add_parser(
        "receive-mail",
        help="run the SMTP listener for tickets by email (LINKGATE_SUPPORT_ADDRESS, "
        "LINKGATE_BILLING_ADDRESS) until stopped",
    )
    receive.add_argument("--host", default=None,
                         help="default: LINKGATE_INBOUND_SMTP_HOST (127.0.0.1)")
    receive.add_argument("--port", type=_bounded_int(1, 65_535), default=None,
                         help="default: LINKGATE_INBOUND_SMTP_PORT (2525)")
    receive.set_defaults(handler=cmd_receive_mail)

    invoice_run = commands.add_parser(
        "invoice-run", help="invoice every uninvoiced charge of an ended month (idempotent)"
    )
    invoice_run.add_argument("--period", required=True, help="the month, YYYY-MM")
    invoice_run.set_defaults(handler=cmd_invoice_run)

    staff = commands.add_parser(
        "create-staff",
        help="create an internal staff user (password from LINKGATE_STAFF_PASSWORD or a prompt)",
    )
    staff.add_argument("--email", required=True)
    staff.add_argument("--name", required=True)
    staff.add_argument("--role", required=True, choices=["SUPPORT", "BILLING", "ADMIN"])
    staff.add_argument(
        "--totp", action="store_true",
        help="turn on two-factor sign-in and print its secret and recovery codes, once "
        "(needed to sign in with LINKGATE_STAFF_REQUIRE_TOTP)",
    )
    staff.set_defaults(handler=cmd_create_staff)
    return parser


def _ignore_closed_loop_in_worker_threads() -> None:
    """aiosqlite hands a failed connection's error back from its worker thread; when the
    command has already reported it and ``asyncio.run`` has closed the loop, that thread dies
    with "Event loop is closed" and Python prints its traceback after our one line. Nothing
    is lost there; any other exception in a thread is printed as usual."""
    default = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, RuntimeError) and str(args.exc_value) == "Event loop is closed":
            return
        default(args)

    threading.excepthook = hook


def main(argv: Sequence[str] | None = None) -> int:
    _ignore_closed_loop_in_worker_threads()
    install_commit_hooks()  # a command's commits reach live subscribers too (PostgreSQL)
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
