"""All configuration, from ``LINKGATE_*`` environment variables; one class, one cached getter."""

from __future__ import annotations

import ipaddress
import json
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from resolvers.delivery import SmtpServer
from resolvers.pagination import PageBounds
from resolvers.tunables import Tunables

# Used only in demo mode, never accepted otherwise: the demo must start with no configuration.
DEMO_SECRET_KEY = "linkgate-demo-secret-key-not-for-production-use"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINKGATE_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./linkgate.db"
    secret_key: SecretStr | None = None
    demo: bool = False
    graphiql: bool = True
    introspection: bool = True
    smtp_url: str | None = None
    mail_from: str = "Linkgate <notifications@linkgate.example>"
    notification_max_attempts: int = Field(default=10, ge=1, le=1000)
    # 0: no background delivery in ``serve`` (run ``linkgate send-notifications`` from cron).
    notification_interval_seconds: float = Field(default=0, ge=0)

    token_issuer: str = "linkgate"
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
    # New objects between two collections of the young generation (CPython's default: 700);
    # see linkgate/serving.py.
    gc_young_threshold: int = Field(default=50_000, ge=700)
    cors_origins: list[str] = Field(default_factory=list)

    currency: str = Field(default="EUR", pattern="^[A-Z]{3}$")
    credit_unit_price: int = Field(default=5, ge=0, description="minor units per credit")
    tax_rate_basis_points: int = Field(default=2100, ge=0, le=10_000)
    invoice_due_days: int = Field(default=14, ge=0, le=365)
    max_ticket_body_chars: int = Field(default=20_000, ge=100, le=1_000_000)
    download_link_ttl_seconds: int = Field(default=300, ge=10, le=86_400)

    # Failed sign-ins (and link proofs) are counted per (email, client), per client and per
    # email; see auth/throttle.py for what each limit does.
    login_max_failures: int = Field(default=5, ge=1)
    login_client_max_failures: int = Field(default=50, ge=1)
    login_email_max_failures: int = Field(default=20, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url_parses(cls, value: str | None) -> str | None:
        if value:
            try:
                SmtpServer.from_url(value)
            except ValueError as error:
                raise ValueError(f"LINKGATE_SMTP_URL: {error}") from None
        return value or None

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies_are_networks(cls, value: Any) -> list[str]:
        """A JSON list or a comma-separated string of CIDRs (or single addresses)."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        networks = []
        for item in value or []:
            item = str(item).strip()
            if not item:
                continue
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"LINKGATE_TRUSTED_PROXIES: {item!r} is not a CIDR") from None
        return networks

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.default_page_size > self.max_page_size:
            raise ValueError("LINKGATE_DEFAULT_PAGE_SIZE cannot be over LINKGATE_MAX_PAGE_SIZE")
        if self.secret_key is None and not self.demo:
            raise ValueError(
                "LINKGATE_SECRET_KEY is required outside demo mode "
                "(set it to a long random string, or run `linkgate serve --demo`)"
            )
        if self.secret_key is not None and len(self.secret_key.get_secret_value()) < 32:
            raise ValueError("LINKGATE_SECRET_KEY must be at least 32 characters long")
        return self

    @property
    def signing_key(self) -> str:
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        return DEMO_SECRET_KEY

    @property
    def token_ttl(self) -> timedelta:
        return timedelta(seconds=self.token_ttl_seconds)


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
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
