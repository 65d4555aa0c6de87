"""All configuration, from ``LINKGATE_*`` environment variables; one class, one cached getter."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    token_issuer: str = "linkgate"
    token_ttl_seconds: int = Field(default=3600, ge=60)

    default_page_size: int = Field(default=20, ge=1, le=100)
    max_page_size: int = Field(default=100, ge=1, le=100)
    max_query_depth: int = Field(default=15, ge=2)
    max_aliases: int = Field(default=30, ge=1)
    max_query_tokens: int = Field(default=5000, ge=100)
    max_body_bytes: int = Field(default=100_000, ge=1_000)

    login_max_failures: int = Field(default=5, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
