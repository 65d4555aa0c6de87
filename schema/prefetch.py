"""Children loaded together with their parent's page, when the query asks for them.

A field that awaits a DataLoader costs a coroutine, a future, a task in graphql-core's gather
and a turn of the event loop, for every object: on the dashboard, ``Invoice.lines`` alone ran
500 times. When the resolver of a list (``Account.invoices``) sees that the query selects the
child below it (``edges.node.lines``), it loads the children for its whole page at once — the
same batched statement, issued one step earlier — and hands them to the objects it builds. The
child field then returns them at once, and the whole subtree completes without awaiting.
Without a prefetch (another path to the object, or a query that does not select the child)
the child field loads as before, so prefetching never changes an answer. A prefetch may load
rows a field's ``@requires`` guard will then refuse to show; the guard still decides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

import strawberry
from aiodataloader import DataLoader
from graphql import (
    FieldNode, FragmentDefinitionNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode,
)

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


def selects(info: strawberry.Info, *path: str) -> bool:
    """Whether the query selects ``path`` (GraphQL names) below the current field, through
    fragments too. An ``@include``/``@skip`` is not evaluated: at worst a prefetch is wasted.

    It walks graphql-core's syntax tree: ``info.selected_fields`` would build Strawberry's
    copy of the whole subtree, for every parent, to answer a yes-or-no question."""
    raw = info._raw_info  # Strawberry exposes the field nodes only on graphql-core's info
    return any(
        _selects(node.selection_set, path, raw.fragments) for node in raw.field_nodes
    )


def _selects(
    selection_set: SelectionSetNode | None, path: tuple[str, ...],
    fragments: dict[str, FragmentDefinitionNode],
) -> bool:
    if selection_set is None:
        return False
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value == path[0] and (
                len(path) == 1 or _selects(selection.selection_set, path[1:], fragments)
            ):
                return True
        elif isinstance(selection, InlineFragmentNode):
            if _selects(selection.selection_set, path, fragments):
                return True
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None and _selects(fragment.selection_set, path, fragments):
                return True
    return False


async def prefetch(
    info: strawberry.Info, path: tuple[str, ...], loader: DataLoader, keys: Sequence[Key]
) -> dict[Key, Any]:
    """The values for ``keys`` if the query selects ``path``, otherwise nothing; ``loader``
    takes a tuple of keys (``Loaders.invoice_lines_by_invoice_ids`` and the like)."""
    if not keys or not selects(info, *path):
        return {}
    return dict(zip(keys, await loader.load(tuple(keys))))


class _NotPrefetched:
    def __repr__(self) -> str:
        return "NOT_PREFETCHED"


# The default of a prefetched slot: ``None`` can be a prefetched answer (an account you cannot see).
NOT_PREFETCHED: Any = _NotPrefetched()


def prefetched_or(value: Value, load: Callable[[], Awaitable[Value]]) -> Value | Awaitable[Value]:
    """The prefetched value, or the awaitable that loads it (graphql-core takes either).

    Only for fields without field extensions: an extension's sync path would receive the
    awaitable (``GuardObjects`` handles it, see ``schema/directives.py``)."""
    return load() if value is NOT_PREFETCHED else value
