"""``@requires(permission:)``: one object that is both the printed directive and the check.

Fields and types declare ``Requires`` as a schema directive. ``install_guards`` walks the
types once, when the schema is built, and attaches the enforcement to every field the
directive concerns, so the SDL cannot say one thing while the server does another:

- a field carrying ``@requires`` checks the permission on the parent's account before it runs;
- a field whose result can hold objects of a type carrying ``@requires`` (directly, in a list,
  in a connection, or through an interface such as ``Node``) checks each object against its
  own account: lists and connections leave out what the caller may not see, a single object
  becomes ``null`` with an error;
- a subscription field is left to its generator, which checks each event's account (its parent
  is the root, with no account of its own).

It also writes the documentation of every ``@requires`` from the directive itself (so a field
cannot carry one without the other): the gated field's or type's description gains a sentence
naming the permission, and each ``Permission`` value lists what it gates.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Iterable
from typing import Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.schema.name_converter import NameConverter
from strawberry.schema_directive import Location
from strawberry.types.base import StrawberryList, StrawberryOptional, has_object_definition
from strawberry.types.field import StrawberryField
from strawberry.types.lazy_type import LazyType

from auth.errors import NotFound, PermissionDenied
from auth.permissions import Permission
from schema.context import Context
from schema.enums import Permission as _RegisteredPermission  # noqa: F401  (registers the enum)
from schema.enums import describe_permissions
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
    """Attach the enforcement of every ``@requires`` in ``types``, and its documentation (call
    before ``Schema``; calling it again changes nothing)."""
    types = list(types)
    for cls in types:
        permission = requirement_of(cls)
        if permission is not None:
            _TYPE_REQUIREMENTS[cls] = permission
    for cls in types:
        for field in cls.__strawberry_definition__.fields:  # type: ignore[attr-defined]
            _install_on_field(field)
    describe_requirements(types)


# --- documentation: derived from the directives, so it cannot disagree with them ----------

_NAMES = NameConverter()  # the schema's own naming (camelCase fields)
_ROOT_TYPES = frozenset({"Query", "Mutation", "Subscription"})


def field_requirement(field: StrawberryField) -> Permission | None:
    """The permission a field's own ``@requires`` asks for, if it has one."""
    for directive in field.directives:
        if isinstance(directive, Requires):
            return directive.permission
    return None


def _words(type_name: str) -> str:
    """``CreditLedgerEntry`` -> ``credit ledger entry``: how a sentence names the type."""
    return " ".join(re.findall(r"[A-Z][a-z0-9]*", type_name)).lower() or type_name


def field_sentence(type_name: str, field: StrawberryField, permission: Permission) -> str:
    """What a gated field's description says: the permission, and on which account
    (``RequiresPermission`` checks the parent's)."""
    if field.is_subscription:
        whose = "the account of each event"
    elif type_name in _ROOT_TYPES:
        whose = "the account it concerns"
    elif type_name == "Account":
        whose = "the account"
    else:
        whose = f"the {_words(type_name)}'s account"
    return f"Requires `{permission.value}` on {whose}."


def type_sentence(type_name: str, permission: Permission) -> str:
    """What a gated type's description says: each object is checked on its own account."""
    return f"Requires `{permission.value}` on the {_words(type_name)}'s account, by every path."


def with_sentence(description: str | None, sentence: str) -> str:
    """``description`` with ``sentence`` after a blank line, once: the schema is built many
    times in one process (every test app), on the same field objects."""
    if not description:
        return sentence
    if description == sentence or description.endswith(f"\n\n{sentence}"):
        return description
    return f"{description}\n\n{sentence}"


def describe_requirements(types: Iterable[type]) -> None:
    """Appends the requirement to the description of every gated type and field of ``types``,
    and lists under each ``Permission`` value what carries it (no hand-kept list to forget)."""
    gates: dict[Permission, set[str]] = {permission: set() for permission in Permission}
    for cls in dict.fromkeys(types):
        definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
        type_name = definition.name
        permission = requirement_of(cls)
        if permission is not None:
            definition.description = with_sentence(
                definition.description, type_sentence(type_name, permission)
            )
            gates[permission].add(f"every `{type_name}`")
        for field in definition.fields:
            permission = field_requirement(field)
            if permission is None:
                continue
            field.description = with_sentence(
                field.description, field_sentence(type_name, field, permission)
            )
            gates[permission].add(f"`{type_name}.{_NAMES.from_field(field)}`")
    describe_permissions({permission: sorted(names) for permission, names in gates.items()})


def _install_on_field(field: StrawberryField) -> None:
    if field.is_subscription:
        # Its parent is the root (no account to check) and its resolver is a generator the
        # extensions cannot wrap: a subscription checks its permission on each event's account
        # in the generator (schema/subscription.py). Its ``@requires`` is still documented.
        return
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
