"""The root Query."""

from __future__ import annotations

import strawberry

from auth.errors import BadInput
from schema.accounts import Viewer
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
