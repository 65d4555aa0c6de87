"""All configuration, from ``LINKGATE_*`` environment variables; one class, one cached getter."""

from __future__ import annotations

import inspect
import ipaddress
import json
import re
from datetime import timedelta
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from resolvers.delivery import SmtpServer
from resolvers.pagination import PageBounds
from auth.enrollment import enrollment_key
from resolvers.tunables import Seller, Tunables

# Used only in demo mode, never accepted otherwise: the demo must start with no configuration.
DEMO_SECRET_KEY = "linkgate-demo-secret-key-not-for-production-use"


# The demo's seller, so its invoices look like the real thing with no configuration.
DEMO_SELLER = Seller(
    name="Linkgate Demo Services S.L.",
    address="Carrer de Pallars 193\n08005 Barcelona\nSpain",
    tax_id="ESB12345674",
    payment_instructions="Pay by card in the dashboard, or by bank transfer to "
                         "IBAN ES91 2100 0418 4502 0005 1332 (BIC CAIXESBBXXX) quoting the invoice number.",
)

ENV_PREFIX = "LINKGATE_"

# The async drivers the engine can use; anything else fails at the first request.
ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}


class ConfigurationError(Exception):
    """A setting that cannot work, said in one line that names it (``LINKGATE_…``)."""


class Settings(BaseSettings):
    # Finite numbers only: a timeout of "nan" or "inf" is a mistake, not a choice.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", allow_inf_nan=False)

    database_url: str = "sqlite+aiosqlite:///./linkgate.db"
    secret_key: SecretStr | None = None
    demo: bool = False
    graphiql: bool = True
    introspection: bool = True
    smtp_url: str | None = None
    mail_from: str = Field(default="Linkgate <notifications@linkgate.example>", min_length=3)
    notification_max_attempts: int = Field(default=10, ge=1, le=1000)
    # 0: no background delivery in ``serve`` (run ``linkgate send-notifications`` from cron).
    notification_interval_seconds: float = Field(default=0, ge=0)
    # Tickets by email (``linkgate receive-mail``): where the listener binds, the addresses it
    # takes mail for (each names the department of the tickets it opens), and the largest
    # message it reads (anything bigger is refused with 552 while it streams in).
    inbound_smtp_host: str = "127.0.0.1"
    inbound_smtp_port: int = Field(default=2525, ge=1, le=65_535)
    support_address: str = "support@linkgate.example"
    billing_address: str = "billing@linkgate.example"
    inbound_max_bytes: int = Field(default=10 * 1024 * 1024, ge=10_000, le=64 * 1024 * 1024)

    token_issuer: str = Field(default="linkgate", min_length=1, max_length=200)
    # Access tokens are short-lived; a session lives on through its rotating refresh tokens.
    token_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    session_ttl_seconds: int = Field(default=30 * 86_400, ge=300)
    invitation_ttl_seconds: int = Field(default=7 * 86_400, ge=60, le=90 * 86_400)
    password_reset_ttl_seconds: int = Field(default=30 * 60, ge=60, le=86_400)
    sign_up_ttl_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)
    # Where the emailed links point: the dashboard that calls acceptInvitation, resetPassword…
    public_url: str = Field(default="http://localhost:8000", pattern=r"^https?://[^\s]+$")
    # CIDRs of the proxies whose X-Forwarded-For is believed; empty: the header is ignored.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    staff_require_totp: bool = False
    # Sign-up and password-reset links one client address may have mailed a day / an hour.
    mail_links_per_client: int = Field(default=20, ge=1)
    # signUp and requestPasswordReset take at least this long, whatever the email (no oracle).
    answer_floor_seconds: float = Field(default=0.4, ge=0, le=10)

    default_page_size: int = Field(default=20, ge=1, le=100)
    max_page_size: int = Field(default=100, ge=1, le=100)
    max_query_depth: int = Field(default=15, ge=2)
    max_aliases: int = Field(default=30, ge=1)
    max_query_tokens: int = Field(default=5000, ge=100)
    max_body_bytes: int = Field(default=100_000, ge=1_000)
    max_query_cost: int = Field(default=250_000, ge=10)
    # The document's shape, measured before validation (schema/document_limits.py): selections
    # in one selection set as written; selections with every fragment spread expanded; steps
    # of the check that same-named fields merge (graphql-core's own budget is 500,000).
    max_selections_per_set: int = Field(default=100, ge=10)
    max_selections: int = Field(default=500, ge=100)
    max_merge_comparisons: int = Field(default=2_000, ge=100, le=500_000)
    max_batch_operations: int = Field(default=10, ge=1, le=100)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    # Each server process's database pool: connections kept open, and how many more may open
    # under load (closed again when they come back to a full pool, so a pool smaller than the
    # requests in flight opens and closes connections all the time), and how long a request
    # waits for one. Each process also keeps one LISTEN connection (live updates).
    db_pool_size: int = Field(default=10, ge=1, le=1_000)
    db_max_overflow: int = Field(default=10, ge=0, le=1_000)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # New objects between two collections of the young generation (CPython's default: 700);
    # see linkgate/serving.py.
    gc_young_threshold: int = Field(default=50_000, ge=700)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Request headers a browser may send besides Authorization and Content-Type (tracing's
    # sentry-trace/baggage/traceparent, apollo-require-preflight…).
    cors_allow_headers: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Persisted documents (docs/persisted-documents.md). Automatic persisted queries: the
    # documents clients registered by hash, least recently used first out; in this process's
    # memory (each process keeps its own; a miss makes the client send the document again).
    persisted_query_cache_size: int = Field(default=1_000, ge=1, le=100_000)
    # Users whose computed rights each process keeps (auth/access_cache.py): reused only while
    # the database's rights version has not moved, so never stale; 0 reads them every request.
    access_cache_size: int = Field(default=10_000, ge=0, le=1_000_000)
    # Trusted documents: graphql-codegen's persisted-documents.json ({"<sha256 hex>": "<document>"}),
    # checked whole at startup; and whether customers may run only those (staff run anything).
    trusted_documents: Path | None = None
    trusted_documents_only: bool = False

    # Live updates (subscriptions over graphql-transport-ws on /graphql; linkgate/live.py).
    # Open subscriptions per user on one server process, and per socket.
    max_subscriptions_per_user: int = Field(default=20, ge=1, le=1_000)
    max_subscriptions_per_socket: int = Field(default=10, ge=1, le=1_000)
    # How often an idle socket's session is checked again (a revoked one is closed).
    subscription_recheck_seconds: float = Field(default=30.0, gt=0, le=3_600)
    # Events waiting for one subscriber that does not read; past it the socket is closed.
    subscription_queue_size: int = Field(default=100, ge=1, le=10_000)
    # Seconds a socket has to send connection_init after opening.
    subscription_init_timeout_seconds: float = Field(default=10.0, gt=0, le=600)

    # Logs: ``text`` for people, ``json`` for collectors (linkgate/logs.py).
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # When set, GET /metrics wants ``Authorization: Bearer <token>``.
    metrics_token: SecretStr | None = None

    currency: str = Field(default="EUR", pattern="^[A-Z]{3}$")
    credit_unit_price: int = Field(default=5, ge=0, description="minor units per credit")
    tax_rate_basis_points: int = Field(default=2100, ge=0, le=10_000)
    invoice_due_days: int = Field(default=14, ge=0, le=365)
    max_ticket_body_chars: int = Field(default=20_000, ge=100, le=1_000_000)
    download_link_ttl_seconds: int = Field(default=300, ge=10, le=86_400)

    # The seller block printed on invoices (a snapshot on each invoice as it is issued).
    # LINKGATE_SELLER_ADDRESS takes its lines separated by newlines or " | ".
    seller_name: str | None = Field(default=None, max_length=200)
    seller_address: str | None = Field(default=None, max_length=500)
    seller_tax_id: str | None = Field(default=None, max_length=32)
    payment_instructions: str | None = Field(default=None, max_length=500)
    # Who takes card payments: ``test`` (Stripe's test tokens, nothing charged; the demo's
    # and the tests' choice) or ``stripe``. Unset outside demo mode: cards are switched off,
    # so a production server never takes fake payments by default.
    payment_gateway: Literal["test", "stripe"] | None = None
    stripe_api_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    # Only for tests and Stripe-compatible stubs; Stripe's own API otherwise.
    stripe_api_base: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    payment_timeout_seconds: float = Field(default=20.0, gt=0, le=120)
    payment_pending_retry_seconds: int = Field(default=120, ge=1, le=86_400)

    # Failed sign-ins (and link proofs) are counted per (email, client), per client and per
    # email; see auth/throttle.py for what each limit does.
    login_max_failures: int = Field(default=5, ge=1)
    login_client_max_failures: int = Field(default=50, ge=1)
    login_email_max_failures: int = Field(default=20, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)

    @field_validator("database_url")
    @classmethod
    def _database_url_is_async(cls, value: str) -> str:
        shape = "not a database URL like postgresql+asyncpg://user:password@host:5432/db"
        special = "encode @ / # ? in the password as %40 %2F %23 %3F"
        try:
            url = make_url(value)
            port = url.port
        except (ArgumentError, ValueError):  # the parser's message can quote the password
            raise ValueError(f"{shape} ({special})") from None
        if (url.host and "@" in url.host) or (port is not None and not 1 <= port <= 65_535):
            raise ValueError(f"{shape}: check the host and port ({special})")
        driver = ASYNC_DRIVERS.get(url.get_backend_name())
        if driver is None:
            raise ValueError(f"the {url.get_backend_name()!r} database is not supported (SQLite or PostgreSQL)")
        if url.get_driver_name() != driver:
            raise ValueError(f"use the async driver: {url.get_backend_name()}+{driver}://…")
        unknown = sorted(set(url.query) - _connect_options(driver))
        if unknown:
            hint = " (asyncpg spells it ?ssl=require)" if "sslmode" in unknown else ""
            raise ValueError(f"the {driver} driver takes no option {', '.join(unknown)}{hint}")
        return value

    @field_validator("mail_from")
    @classmethod
    def _mail_from_is_an_address(cls, value: str) -> str:
        name, address = parseaddr(value)
        if "@" not in address or any(ord(c) < 32 for c in value):
            raise ValueError("not an email address like 'Linkgate <notifications@example.com>'")
        return value

    @field_validator("support_address", "billing_address")
    @classmethod
    def _bare_address(cls, value: str) -> str:
        """A bare address (the listener compares it with ``RCPT TO``), stored lower-cased."""
        try:
            checked = validate_email(value.strip(), check_deliverability=False)
        except EmailNotValidError:
            raise ValueError("not a bare email address like support@example.com") from None
        return checked.normalized.lower()

    @field_validator("inbound_smtp_host")
    @classmethod
    def _host_name(cls, value: str) -> str:
        """An IP address or a host name (the listener binds to it)."""
        value = value.strip()
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
        label = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
        if not re.fullmatch(rf"{label}(\.{label})*\.?", value) or len(value) > 253:
            raise ValueError("not an IP address or host name to listen on, like 127.0.0.1 or 0.0.0.0")
        return value

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _case_insensitive(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return value.strip().lower() if value.strip().lower() in ("text", "json") else value.strip().upper()

    @field_validator("secret_key", "metrics_token")
    @classmethod
    def _secrets_are_long(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None  # set but empty: as if unset
        minimum = 32 if info.field_name == "secret_key" else 16
        if value is not None and len(value.get_secret_value()) < minimum:
            raise ValueError(f"must be at least {minimum} characters long")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> list[str]:
        """A JSON list or a comma-separated string of origins (``https://host[:port]``)."""
        items = _list_setting(value)
        for item in items:
            if item != "*" and not re.fullmatch(r"https?://[^\s/?#]+", item):
                raise ValueError(f"{item!r} is not an origin like https://dashboard.example")
        return items

    @field_validator("cors_allow_headers", mode="before")
    @classmethod
    def _header_names(cls, value: Any) -> list[str]:
        """Header names (RFC 9110 tokens), lower-cased; JSON or comma-separated."""
        names = []
        for item in _list_setting(value):
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", item):
                raise ValueError(f"{item!r} is not a header name")
            names.append(item.lower())
        return names

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url_parses(cls, value: str | None) -> str | None:
        if value:
            try:
                SmtpServer.from_url(value)
            except ValueError as error:
                raise ValueError(str(error)) from None
        return value or None

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies_are_networks(cls, value: Any) -> list[str]:
        """A JSON list or a comma-separated string of CIDRs (or single addresses)."""
        networks = []
        for item in _list_setting(value):
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not a CIDR") from None
        return networks

    @field_validator("seller_name", "seller_address", "seller_tax_id", "payment_instructions")
    @classmethod
    def _printable_text(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = "\n".join(line.strip() for line in value.replace(" | ", "\n").splitlines() if line.strip())
        if any(ord(c) < 32 and c != "\n" for c in value):
            raise ValueError("holds control characters")
        return value

    @field_validator("stripe_api_key", "stripe_webhook_secret")
    @classmethod
    def _stripe_secret_shape(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Stripe's own prefixes: a publishable key (pk_…) here would be a mistake worth stopping."""
        if value is None or not value.get_secret_value().strip():
            return None
        prefixes = ("sk_", "rk_") if info.field_name == "stripe_api_key" else ("whsec_",)
        if not value.get_secret_value().startswith(prefixes) or len(value.get_secret_value()) < 10:
            raise ValueError(f"is not a Stripe {'secret key (sk_… or rk_…)' if 'key' in info.field_name else 'webhook signing secret (whsec_…)'}")
        return value

    @field_validator("trusted_documents", mode="before")
    @classmethod
    def _manifest_path(cls, value: Any) -> Any:
        """Set but empty: as if unset (``Path("")`` would be the working directory)."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("trusted_documents")
    @classmethod
    def _manifest_is_a_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("not a file: name graphql-codegen's persisted-documents.json")
        return value

    @field_validator("payment_gateway", mode="before")
    @classmethod
    def _gateway_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.default_page_size > self.max_page_size:
            raise ValueError("LINKGATE_DEFAULT_PAGE_SIZE: cannot be over LINKGATE_MAX_PAGE_SIZE")
        if self.support_address == self.billing_address:
            raise ValueError("LINKGATE_BILLING_ADDRESS: cannot be LINKGATE_SUPPORT_ADDRESS (the "
                             "address a message is sent to decides its ticket's department)")
        if self.payment_gateway == "stripe" and (self.stripe_api_key is None or self.stripe_webhook_secret is None):
            raise ValueError("LINKGATE_PAYMENT_GATEWAY: stripe needs LINKGATE_STRIPE_API_KEY and "
                             "LINKGATE_STRIPE_WEBHOOK_SECRET")
        if self.trusted_documents_only and self.trusted_documents is None:
            raise ValueError("LINKGATE_TRUSTED_DOCUMENTS_ONLY: needs LINKGATE_TRUSTED_DOCUMENTS, "
                             "the manifest of the documents customers may run")
        return self

    @model_validator(mode="after")
    def _trusted_documents_load(self) -> Settings:
        """Every command that reads the settings checks the manifest whole (each hash, each
        document against the schema and the limits), so ``serve`` stops in one line before
        any worker starts rather than a worker failing with a traceback."""
        if self.trusted_documents is not None:
            from linkgate.app import trusted_documents_for

            try:
                trusted_documents_for(self)
            except ConfigurationError as error:
                raise ValueError(str(error)) from None
        return self

    @property
    def card_gateway(self) -> str | None:
        """The payment gateway in use: the setting, else ``test`` in demo mode, else none."""
        return self.payment_gateway or ("test" if self.demo else None)

    @property
    def signing_key(self) -> str:
        """Asked for only where tokens are signed or read (the server), so the commands that
        sign nothing (``db upgrade``, ``invoice-run``…) run without a key."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        if self.demo:
            return DEMO_SECRET_KEY
        raise ConfigurationError(
            "LINKGATE_SECRET_KEY: required to sign tokens outside demo mode "
            "(a random string of 32 characters or more)"
        )

    @property
    def token_ttl(self) -> timedelta:
        return timedelta(seconds=self.token_ttl_seconds)


    def pool_options(self) -> dict[str, Any]:
        """The server's engine pool, from the three ``db_pool`` settings."""
        return {"pool_size": self.db_pool_size, "max_overflow": self.db_max_overflow,
                "pool_timeout": self.db_pool_timeout_seconds}

    def tunables(self) -> Tunables:
        return Tunables(
            currency=self.currency,
            credit_unit_price=self.credit_unit_price,
            tax_rate_basis_points=self.tax_rate_basis_points,
            invoice_due_days=self.invoice_due_days,
            max_ticket_body_chars=self.max_ticket_body_chars,
            download_link_ttl_seconds=self.download_link_ttl_seconds,
            pages=PageBounds(default=self.default_page_size, maximum=self.max_page_size),
            invitation_ttl_seconds=self.invitation_ttl_seconds,
            password_reset_ttl_seconds=self.password_reset_ttl_seconds,
            sign_up_ttl_seconds=self.sign_up_ttl_seconds,
            public_url=self.public_url.rstrip("/"),
            staff_require_totp=self.staff_require_totp,
            answer_floor_seconds=self.answer_floor_seconds,
            mail_links_per_client=self.mail_links_per_client,
            enrollment_key=self._enrollment_key(),
            seller=self.seller(),
            payment_pending_retry_seconds=self.payment_pending_retry_seconds,
        )

    def _enrollment_key(self) -> bytes:
        if self.secret_key is None and not self.demo:
            return b""  # commands that derive no token run without a key
        return enrollment_key(self.signing_key)

    def seller(self) -> Seller:
        if self.demo and self.seller_name is None:
            return DEMO_SELLER
        return Seller(name=self.seller_name, address=self.seller_address,
                      tax_id=self.seller_tax_id, payment_instructions=self.payment_instructions)


def _connect_options(driver: str) -> set[str]:
    """The query options of a database URL that reach the driver's ``connect``."""
    if driver == "asyncpg":
        import asyncpg

        return set(inspect.signature(asyncpg.connect).parameters) - {"dsn", "connection_class", "record_class"}
    # aiosqlite / pysqlite: SQLAlchemy reads these from the URL itself.
    return {"timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements", "uri", "mode", "cache", "nolock", "immutable"}


def _list_setting(value: Any) -> list[str]:
    """A list setting from the environment: JSON (``["a", "b"]``) or comma-separated."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("starts with '[' but is not a JSON list") from None
            if not isinstance(value, list):
                raise ValueError("is not a JSON list")
        else:
            value = text.split(",")
    if not isinstance(value, (list, tuple)):
        raise ValueError("is not a list")
    return [str(item).strip() for item in value if str(item).strip()]


_NOT_ECHOED = {"secret_key", "metrics_token", "smtp_url", "database_url", "stripe_api_key",
               "stripe_webhook_secret"}


def describe_invalid_settings(error: ValidationError | SettingsError) -> str:
    """One line naming each setting in ``error`` by its environment variable."""
    if isinstance(error, SettingsError):
        found = re.search(r'field "(\w+)"', str(error))
        name = ENV_PREFIX + found.group(1).upper() if found else "a LINKGATE_ setting"
        return f"{name}: cannot be read ({error})"
    parts = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["loc"]:
            name = ENV_PREFIX + str(item["loc"][0]).upper()
            value = item.get("input")
            # Never echo what may hold a password or a key.
            shown = "" if item["loc"][0] in _NOT_ECHOED or isinstance(value, dict) else f" (got {str(value)[:60]!r})"
            parts.append(f"{name}: {message}{shown}")
        else:
            parts.append(message)
    return "; ".join(parts)


def load_settings() -> Settings:
    """The settings from the environment, or ``ConfigurationError`` in one line."""
    try:
        return Settings()
    except (ValidationError, SettingsError) as error:
        raise ConfigurationError(describe_invalid_settings(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
