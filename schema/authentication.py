"""Resolving the caller once per operation, after the limits and validation have passed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from strawberry.extensions import SchemaExtension


class Authenticate(SchemaExtension):
    """Loads the principal and its ``AccessMap`` just before execution: an operation refused
    by parsing, validation or a limit costs no SQL at all."""

    async def on_execute(self) -> AsyncIterator[None]:
        await self.execution_context.context.authenticate()
        yield
