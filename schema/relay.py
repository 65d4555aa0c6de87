"""Relay plumbing: the ``Node`` interface, opaque global IDs and keyset connections."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry

from auth.errors import BadInput
from resolvers.pagination import Page

NodeType = TypeVar("NodeType")


def encode_global_id(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def decode_global_id(global_id: str, field: str = "id") -> tuple[str, int]:
    """``(type name, primary key)``; a string that is not one of our IDs is bad input.
    Strict: only the one spelling ``encode_global_id`` writes is an ID, so no object has
    aliases (base64 decoders skip stray characters; ``int`` reads other scripts' digits)."""
    try:
        raw = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
        type_name, _, pk = raw.partition(":")
        if not (type_name.isascii() and type_name.isidentifier() and pk.isascii() and pk.isdigit()
                and len(pk) <= 18 and encode_global_id(type_name, int(pk)) == global_id):
            raise ValueError(raw)
        return type_name, int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise BadInput(f"`{global_id[:64]}` is not a valid ID.", field=field) from error


def decode_id_of(global_id: str, type_name: str, field: str = "id") -> int:
    """The primary key of a global ID that must name a ``type_name`` (mutation inputs)."""
    decoded_type, pk = decode_global_id(global_id, field)
    if decoded_type != type_name:
        article = "an" if type_name[:1] in "AEIOU" else "a"
        raise BadInput(f"`{global_id[:64]}` is not the ID of {article} {type_name}.", field=field)
    return pk


@strawberry.interface(description="An object with a global, opaque ID.")
class Node:
    pk: strawberry.Private[int]
    # The account whose permissions govern this object (DESIGN §2, the directive).
    account_id: strawberry.Private[int]

    # A plain attribute, set on construction: a field with a resolver would cost a Strawberry
    # ``Info`` and an argument pass for each of the thousands of objects a dashboard returns.
    id: strawberry.ID = strawberry.field(
        init=False, default=strawberry.ID(""), description="The object's global ID."
    )

    def __post_init__(self) -> None:
        self.id = strawberry.ID(encode_global_id(type(self).__name__, self.pk))


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def _edge_cursor(self: Any) -> str:
    return str(self._page.cursor(self._index))


@strawberry.type
class Edge(Generic[NodeType]):
    # Written only when asked for: a dashboard's ~1,300 edges need none of theirs (its pages
    # go on from ``pageInfo.endCursor``).
    cursor: str = strawberry.field(resolver=_edge_cursor)
    node: NodeType
    _page: strawberry.Private[Page[Any]]
    _index: strawberry.Private[int]


@strawberry.type
class Connection(Generic[NodeType]):
    edges: list[Edge[NodeType]]
    page_info: PageInfo
    _count: strawberry.Private[Callable[[], Any]]

    @strawberry.field(description="Rows in the whole list, across every page.")
    async def total_count(self) -> int:
        return int(await self._count())

    @classmethod
    def from_page(cls, page: Page[Any], convert: Callable[[Any], NodeType]) -> Connection[NodeType]:
        edges = [Edge(node=convert(row), _page=page, _index=index) for index, row in enumerate(page.rows)]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=page.cursor(0) if page.rows else None,
                end_cursor=page.end_cursor,
            ),
            _count=page.count,
        )
