"""The root Query."""

from __future__ import annotations

import strawberry

from auth.errors import BadInput
from schema.accounts import Viewer
from schema.billing import invoice_download_url
from schema.nodes import MAX_NODES, fetch_node, fetch_nodes
from schema.relay import Node


@strawberry.type
class Query:
    @strawberry.field(description="Any object by its global ID.")
    async def node(self, info: strawberry.Info, id: strawberry.ID) -> Node | None:
        return await fetch_node(info, id)

    @strawberry.field(description=f"Several objects by ID, in order (at most {MAX_NODES}).")
    async def nodes(self, info: strawberry.Info, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise BadInput(f"At most {MAX_NODES} IDs at once.", field="ids")
        return await fetch_nodes(info, list(ids))  # type: ignore[return-value]

    @strawberry.field(description="The signed-in user; null when not signed in.")
    def viewer(self, info: strawberry.Info) -> Viewer | None:
        principal = info.context.principal
        return None if principal is None else Viewer(user_pk=principal.user_id)

    @strawberry.field(
        description="One short-lived signed link to several invoices at once (a ZIP; one invoice: "
        "its PDF). Each needs INVOICES_READ, like `Invoice`; at most 50. Null, with an error, "
        "when one of them may not be read."
    )
    async def invoice_download_url(
        self, info: strawberry.Info, ids: list[strawberry.ID]
    ) -> str | None:
        return await invoice_download_url(info, list(ids))
