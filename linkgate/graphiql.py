"""GraphiQL, served by the gateway itself (placeholder: Strawberry's page until the local
assets land)."""

from __future__ import annotations

from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute
from strawberry.http.ides import get_graphql_ide_html

from linkgate.settings import Settings


def graphiql_page(settings: Settings) -> HTMLResponse:
    """The page ``GET /graphql`` answers a browser with."""
    return HTMLResponse(get_graphql_ide_html("graphiql"))


def graphiql_routes(settings: Settings) -> list[BaseRoute]:
    """The routes that serve GraphiQL's own files."""
    return []
