"""Trusted documents only: customers run the documents their app was built with; staff run any.

With ``LINKGATE_TRUSTED_DOCUMENTS_ONLY`` the server holds a manifest of the documents the
customer apps were built with (``linkgate.persisted_documents``). Every operation passes
``TrustedDocumentsOnly`` whichever way it came (a single request, each operation of a batch,
GET or POST, a subscription over a socket), so there is no path around it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Container
from typing import Any

from strawberry.extensions import SchemaExtension

from auth.errors import BadInput
from schema.context import Context

TRUSTED_ONLY = "This endpoint runs only the documents the app was built with (trusted documents)."


class TrustedDocumentsOnly(SchemaExtension):
    """Refuses a document outside the manifest unless the caller is staff (internal tools,
    GraphiQL), before it is parsed: a refusal costs no parse, and no validation error
    describes the schema to a customer.

    Without a token the caller is a customer, and is refused with no SQL at all. With one,
    staff-ness is the user's, so ``Context.authenticate`` loads it here (``Authenticate``
    would a moment later); a forged or expired token never gets here (the request is refused
    while its context is built), a revoked one ends in ``UNAUTHENTICATED`` as anywhere else."""

    def __init__(self, trusted: Container[str]) -> None:
        self.trusted = trusted

    async def on_parse(self) -> AsyncIterator[None]:
        context = self.execution_context
        if context.query not in self.trusted and not await _is_staff(context.context):
            raise BadInput(
                f"{TRUSTED_ONLY} This document is not one of them: send the `documentId` of "
                "one that is.", trustedDocumentsOnly=True,
            )
        yield


async def _is_staff(context: Any) -> bool:
    if not isinstance(context, Context) or context.credentials is None:
        return False  # anonymous: a customer
    if context.principal is None:
        await context.authenticate()
    return context.principal is not None and context.principal.is_staff
