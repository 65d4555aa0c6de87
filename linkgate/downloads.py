"""``GET /invoices/download?token=…``: the PDF (one invoice) or ZIP (several) behind a signed link.

The link names a user; the download re-checks, with that user's permissions as they are now,
exactly what the GraphQL ``Invoice`` type checks (``INVOICES_READ`` on the paying account), and
refuses links of a user whose tokens were revoked since (password change).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from auth.download_tokens import DownloadLinkExpired, read_download_token
from auth.errors import BadInput, LinkgateError, NotFound, PermissionDenied, Unauthenticated
from auth.policy import load_access
from auth.principals import principal_for
from linkgate.context import token_settings
from linkgate.settings import Settings
from resolvers.invoice_documents import Printing, load_documents, render_pdf, render_zip

ZIP_NAME = "invoices.zip"


def download_endpoint(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> Callable[[Request], Awaitable[Response]]:
    """The route's handler, bound to the app's settings and session factory."""
    printing = Printing.of(settings.tunables())

    async def download(request: Request) -> Response:
        from linkgate.app import error_response

        tokens = token_settings(settings)
        try:
            token = request.query_params.get("token") or ""
            if not token:
                raise BadInput("The download link has no token.", field="token")
            claims = read_download_token(token, secret=tokens.secret, issuer=tokens.issuer)
            async with sessions() as session:
                principal = await principal_for(
                    session, claims,
                    ended="This link belongs to a session that has ended; sign in again.",
                )
                access = await load_access(session, principal)
                documents = await load_documents(session, access, claims.invoice_ids)
        except Unauthenticated as error:
            return error_response(401, error.code, error.message)
        except DownloadLinkExpired as error:
            return error_response(410, error.code, error.message)
        except NotFound as error:
            return error_response(404, error.code, error.message)
        except PermissionDenied as error:
            return error_response(403, error.code, error.message, **error.extensions)
        except LinkgateError as error:
            return error_response(400, error.code, error.message, **error.extensions)
        headers = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
        if len(documents) == 1:
            body = await run_in_threadpool(render_pdf, documents[0], printing)
            headers["content-disposition"] = f'attachment; filename="{documents[0].filename}"'
            return Response(body, media_type="application/pdf", headers=headers)
        body = await run_in_threadpool(render_zip, documents, printing)
        headers["content-disposition"] = f'attachment; filename="{ZIP_NAME}"'
        return Response(body, media_type="application/zip", headers=headers)

    return download
