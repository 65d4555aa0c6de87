"""``@requires(permission:)``: one object that is both the printed directive and the check.

Fields and types declare ``Requires`` as a schema directive. ``install_guards`` walks the
types once, when the schema is built, and attaches the enforcement to every field the
directive concerns, so the SDL cannot say one thing while the server does another:

- a field carrying ``@requires`` checks the permission on the parent's account before it runs;
- a field whose result can hold objects of a type carrying ``@requires`` (directly, in a list,
  in a connection, or through an interface such as ``Node``) checks each object against its
  own account: lists and connections leave out what the caller may not see, a single object
  becomes ``null`` with an error.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Iterable
from typing import Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.schema_directive import Location
from strawberry.types.base import StrawberryList, StrawberryOptional, has_object_definition
from strawberry.types.field import StrawberryField
from strawberry.types.lazy_type import LazyType

from auth.errors import NotFound, PermissionDenied
from auth.permissions import Permission
from schema.context import Context
from schema.enums import Permission as _RegisteredPermission  # noqa: F401  (registers the enum)
from schema.relay import Connection


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION, Location.OBJECT],
    name="requires",
    description=(
        "The caller needs `permission` on the account that owns the object. On a field: the "
        "parent's account. On a type: each object's own account, by every path."
    ),
)
class Requires:
    permission: Permission


def gated(permission: Permission, **field_options: Any) -> Any:
    """A field carrying ``@requires(permission:)``; usable as a decorator or an attribute."""
    return strawberry.field(directives=[Requires(permission=permission)], **field_options)


def requirement_of(cls: type) -> Permission | None:
    """The permission a type's ``@requires`` asks for, if it has one."""
    definition = getattr(cls, "__strawberry_definition__", None)
    for directive in getattr(definition, "directives", None) or ():
        if isinstance(directive, Requires):
            return directive.permission
    return None


def deny(context: Context, account_id: int, permission: Permission) -> Exception:
    """The error for an object the caller may not see: an invisible account looks absent."""
    if not context.access.can_see(account_id):
        return NotFound("Not found.")
    return PermissionDenied(
        f"You need the {permission.value} permission on this account.",
        permission=permission.value,
    )


def object_error(context: Context, obj: Any) -> Exception | None:
    """``None`` when the caller may see ``obj``; otherwise the error to answer with."""
    if not context.enforce_permissions:
        return None
    permission = _TYPE_REQUIREMENTS.get(type(obj))
    if permission is None or context.access.has(obj.account_id, permission):
        return None
    return deny(context, obj.account_id, permission)


_TYPE_REQUIREMENTS: dict[type, Permission] = {}


class RequiresPermission(FieldExtension):
    """Enforces a field's own ``@requires`` against the parent object's account."""

    def __init__(self, directive: Requires) -> None:
        self.permission = directive.permission

    def check(self, source: Any, info: Any) -> None:
        """Raises when the caller lacks the permission on ``source``'s account. Strawberry runs
        it through ``resolve``; the executor calls it itself before a simple resolver
        (``schema/execution.py``), so the rule stays here either way."""
        context: Context = info.context
        if context.enforce_permissions and not context.access.has(
            source.account_id, self.permission
        ):
            raise deny(context, source.account_id, self.permission)

    def resolve(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        self.check(source, info)
        return next_(source, info, **kwargs)

    async def resolve_async(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        self.check(source, info)
        return await next_(source, info, **kwargs)


class GuardObjects(FieldExtension):
    """Checks every object a field returns against its type's ``@requires``."""

    def resolve(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        result = next_(source, info, **kwargs)
        if inspect.isawaitable(result):  # a sync resolver that had nothing prefetched
            return self._filter_later(info.context, result)
        return _filter(info.context, result)

    @staticmethod
    async def _filter_later(context: Context, result: Awaitable[Any]) -> Any:
        return _filter(context, await result)

    async def resolve_async(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        return _filter(info.context, await next_(source, info, **kwargs))


def _filter(context: Context, result: Any) -> Any:
    if result is None or not context.enforce_permissions:
        return result
    if isinstance(result, list):
        # Items already turned into errors (``nodes``) keep their place; denied rows go.
        return [item for item in result if isinstance(item, Exception) or object_error(context, item) is None]
    if isinstance(result, Connection):
        result.edges = [edge for edge in result.edges if object_error(context, edge.node) is None]
        return result
    error = object_error(context, result)
    if error is not None:
        raise error
    return result


def install_guards(types: Iterable[type]) -> None:
    """Attach the enforcement of every ``@requires`` in ``types`` (call once, before ``Schema``)."""
    types = list(types)
    for cls in types:
        permission = requirement_of(cls)
        if permission is not None:
            _TYPE_REQUIREMENTS[cls] = permission
    for cls in types:
        for field in cls.__strawberry_definition__.fields:  # type: ignore[attr-defined]
            _install_on_field(field)


def _install_on_field(field: StrawberryField) -> None:
    kinds = {type(extension) for extension in field.extensions}
    for directive in field.directives:
        if isinstance(directive, Requires) and RequiresPermission not in kinds:
            field.extensions.append(RequiresPermission(directive))
    if GuardObjects not in kinds and _may_hold_guarded_objects(field.type):
        field.extensions.append(GuardObjects())


def _may_hold_guarded_objects(field_type: Any) -> bool:
    inner = _unwrap(field_type)
    definition = getattr(inner, "__strawberry_definition__", None)
    if definition is None or not has_object_definition(inner):
        return False
    if definition.is_interface:
        return True
    if inner in _TYPE_REQUIREMENTS:
        return True
    if _is_connection(inner):
        edge_type = _unwrap(_field_named(inner, "edges").type)
        return _unwrap(_field_named(edge_type, "node").type) in _TYPE_REQUIREMENTS
    return False


def _is_connection(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, Connection)


def _field_named(cls: type, python_name: str) -> StrawberryField:
    for field in cls.__strawberry_definition__.fields:  # type: ignore[attr-defined]
        if field.python_name == python_name:
            return field
    raise LookupError(python_name)


def _unwrap(field_type: Any) -> Any:
    while True:
        if isinstance(field_type, LazyType):
            field_type = field_type.resolve_type()
        elif isinstance(field_type, (StrawberryOptional, StrawberryList)):
            field_type = field_type.of_type
        else:
            return field_type
